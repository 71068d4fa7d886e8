//! Reclaims the space of deleted messages in packs. A pack (other than the one being
//! appended to) of which less than half is still referenced has its live messages
//! appended to the current pack, their rows pointed there (only if unchanged
//! meanwhile), and is deleted once no row names it. Readers that looked a message up
//! before it moved read the old pack through the descriptor they hold, or look again.

use super::blobs::{BlobRef, Blobs, Location};
use super::writer::Writer;
use crate::Result;
use rusqlite::{params, Connection};
use std::path::Path;
use std::sync::{mpsc, Arc};
use std::time::Duration;

/// How often packs are looked at.
const CHECK_EVERY: Duration = Duration::from_secs(60);
/// Messages moved per transaction.
const BATCH: i64 = 256;

/// Runs compaction on its own thread until dropped.
pub(super) struct Compactor {
    _stop: mpsc::SyncSender<()>,
}

impl Compactor {
    pub(super) fn start(blobs: Arc<Blobs>, writer: Writer, main_db: &Path) -> Compactor {
        let (stop, stopped) = mpsc::sync_channel::<()>(1);
        let main_db = main_db.to_path_buf();
        let started = std::thread::Builder::new()
            .name("blob-compactor".into())
            .spawn(move || {
                super::lower_priority();
                let conn = match super::open_read_only(&main_db) {
                    Ok(c) => c,
                    Err(e) => {
                        tracing::error!("pack compaction cannot start: {e}");
                        return;
                    }
                };
                while let Err(mpsc::RecvTimeoutError::Timeout) = stopped.recv_timeout(CHECK_EVERY) {
                    if let Err(e) = compact(&blobs, &writer, &conn) {
                        tracing::error!("pack compaction: {e}");
                    }
                }
            });
        if let Err(e) = started {
            tracing::error!("pack compaction cannot start: {e}");
        }
        Compactor { _stop: stop }
    }
}

/// Compacts every pack that is mostly dead; returns how many packs were removed.
pub(super) fn compact(blobs: &Blobs, writer: &Writer, conn: &Connection) -> Result<u64> {
    let current = blobs.current_pack();
    let mut removed = 0;
    for pack in blobs.packs()? {
        if pack >= current {
            continue;
        }
        let Some(len) = blobs.pack_len(pack) else {
            continue;
        };
        let live: i64 = conn
            .prepare_cached("SELECT COALESCE((SELECT live FROM packs WHERE id=?1), 0)")?
            .query_row([pack], |r| r.get(0))?;
        if live.max(0) as u64 * 2 >= len {
            continue;
        }
        move_out(blobs, writer, conn, pack)?;
        let left: i64 = conn
            .prepare_cached("SELECT COUNT(*) FROM messages WHERE blob_pack=?1")?
            .query_row([pack], |r| r.get(0))?;
        if left == 0 {
            writer.write(move |c| {
                c.execute("DELETE FROM packs WHERE id=?1", [pack])?;
                Ok(())
            })?;
            blobs.remove_pack(pack)?;
            removed += 1;
        }
    }
    Ok(removed)
}

/// Appends every message still in `pack` to the current pack and points its row there.
fn move_out(blobs: &Blobs, writer: &Writer, conn: &Connection, pack: u32) -> Result<()> {
    let mut after = -1i64;
    loop {
        let rows: Vec<(i64, BlobRef)> = conn
            .prepare_cached(
                "SELECT id, uid, blob_pack, blob_offset, size FROM messages
                 WHERE blob_pack=?1 AND blob_offset>?2 ORDER BY blob_offset LIMIT ?3",
            )?
            .query_map(params![pack, after, BATCH], |r| {
                Ok((r.get(0)?, super::blob_ref_of(r, 1)?))
            })?
            .collect::<rusqlite::Result<_>>()?;
        let Some((_, last)) = rows.last() else {
            return Ok(());
        };
        after = last.at.map_or(after, |at| at.offset as i64);
        let data = rows
            .iter()
            .map(|(_, blob)| blobs.read(blob))
            .collect::<Result<Vec<_>>>()?;
        let moved = blobs.write_batch(
            rows.iter()
                .zip(&data)
                .map(|((_, blob), bytes)| (blob.uid.as_str(), bytes.as_slice())),
        )?;
        let changes: Vec<(i64, BlobRef, Location)> = rows
            .into_iter()
            .zip(moved)
            .map(|((id, blob), to)| (id, blob, to))
            .collect();
        writer.write(move |c| {
            for (id, blob, to) in &changes {
                let Some(from) = blob.at else { continue };
                // Unless the message was deleted or rewritten meanwhile.
                let n = c
                    .prepare_cached(
                        "UPDATE messages SET blob_pack=?3, blob_offset=?4
                         WHERE id=?1 AND uid=?2 AND blob_pack=?5 AND blob_offset=?6",
                    )?
                    .execute(params![
                        id,
                        blob.uid,
                        to.pack,
                        to.offset as i64,
                        from.pack,
                        from.offset as i64
                    ])?;
                if n == 1 {
                    super::count_pack_bytes(c, Some(from), -(blob.len as i64))?;
                    super::count_pack_bytes(c, Some(*to), blob.len as i64)?;
                }
            }
            Ok(())
        })?;
    }
}
