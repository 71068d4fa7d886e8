//! WAL checkpoints off the commit path. By default SQLite runs a checkpoint inside the
//! COMMIT that takes the log past 1,000 pages — copying them into the database file and
//! two fsyncs — and every session waiting on that commit for its `250` waits for it
//! too (27–37 ms outliers at 400 msgs/s, where a commit is otherwise 1–4 ms). Here a
//! thread with its own connection copies the log back behind the writer (PASSIVE: it
//! never blocks the writer), woken by the writer's commits once the log has grown. Only
//! if the log still reaches [`INLINE_PAGES`] (a reader holding an old snapshot, or a
//! write rate the thread cannot follow) does the writer checkpoint itself, as SQLite
//! would, so the log never grows without bound. Both record the pages they are about
//! to copy first ([`ChangedPages`]), for incremental backups.

use super::changed_pages::ChangedPages;
use crate::Result;
use rusqlite::wal::CheckpointMode;
use rusqlite::Connection;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};

/// Log size (pages) from which the checkpoint thread is woken. Each checkpoint ends in
/// an fsync of the database that the writer's own log fsync then queues behind; most
/// log frames are new versions of the same hot pages, so a longer log costs the
/// checkpoint little more and makes those collisions rarer. Measured at 400 msgs/s, 20
/// sessions: at 1,000 pages the slowest `250`s came in clusters every ~1.3 s (p99
/// 1.8–2.5 ms); at 4,000 the clusters were gone (p99 1.7–1.8 ms).
const BEHIND_PAGES: i32 = 4_000;
/// The same for `lookups.db`, whose log is not fsynced at commits: its pages reach the
/// disk only when a checkpoint syncs them, and every page of a 4,000-page log in one
/// flush held up the writer's own fsyncs behind it (p99 at 400 msgs/s 3.4–3.9 ms,
/// against 2.8–3.1 before the file existed). At 256 pages (1 MB) the flushes are small
/// and the p99 is back (2.5–3.1 ms, same runs' Postfix 2.5–4.9).
const LOOKUPS_BEHIND_PAGES: i32 = 256;
/// Log size (pages, 64 MB at 4 KB) at which the writer checkpoints in its own commit.
#[cfg(not(test))]
const INLINE_PAGES: i32 = 16_384;
/// Small in tests, so that they reach the writer's own checkpoint.
#[cfg(test)]
const INLINE_PAGES: i32 = 20;

/// Installs the hook on the writer's connection and starts the thread, which ends when
/// the writer's connection (holding the hook) is gone. The thread also checkpoints
/// `lookups.db` (attached as `lk`), whose log grows with the writer's commits too; its
/// pages are not recorded (backups leave that file out).
pub(super) fn install(
    writer: &mut Connection,
    db_path: &Path,
    data_dir: &Path,
    changes: Arc<ChangedPages>,
) -> Result<()> {
    let conn = super::open_connection(db_path)?;
    super::lookups::attach(&conn, data_dir)?;
    let thread_changes = changes.clone();
    let (wake, woken) = mpsc::sync_channel::<()>(1);
    // Which of the two logs the thread is woken for.
    let main_due = Arc::new(AtomicBool::new(false));
    let lookups_due = Arc::new(AtomicBool::new(false));
    let (thread_main_due, thread_lookups_due) = (main_due.clone(), lookups_due.clone());
    std::thread::Builder::new()
        .name("wal-checkpoint".into())
        .spawn(move || {
            while woken.recv().is_ok() {
                if thread_main_due.swap(false, Ordering::SeqCst) {
                    let done = thread_changes.record_then(|| {
                        conn.query_row("PRAGMA main.wal_checkpoint(PASSIVE)", [], |_| Ok(()))
                    });
                    if let Err(e) = done {
                        tracing::warn!("WAL checkpoint: {e}");
                    }
                }
                if thread_lookups_due.swap(false, Ordering::SeqCst) {
                    if let Err(e) =
                        conn.query_row("PRAGMA lk.wal_checkpoint(PASSIVE)", [], |_| Ok(()))
                    {
                        tracing::warn!("WAL checkpoint of {}: {e}", super::lookups::FILE);
                    }
                }
            }
        })
        .map_err(crate::io_err("start the WAL checkpoint thread"))?;
    // The hook replaces SQLite's automatic checkpoint on this connection. It runs after
    // the commit and must never fail: an error returned here is reported as the
    // COMMIT's although the transaction did commit, and the writer would then answer
    // 451 for messages it has stored. A busy checkpoint (the thread's, at the same
    // moment) is simply done again at a later commit.
    //
    // The log restarts from its beginning only when no reader still uses it, which under
    // steady reads may take many commits; meanwhile `pages` stays above the threshold.
    // Waking the thread at each of those commits had it checkpoint a few pages and
    // fsync the database at nearly every commit (1,195 times for 13,000 messages), each
    // fsync delaying the writer's own. So it is woken again only once another
    // `BEHIND_PAGES` were written since the last wake.
    let (mut main_woken_at, mut lookups_woken_at) = (0, 0);
    writer.wal_hook(Some(move |wal: &mut rusqlite::hooks::Wal, pages: i32| {
        let is_main = wal.name().to_bytes() == b"main";
        let (woken_at, due, behind) = if is_main {
            (&mut main_woken_at, &main_due, BEHIND_PAGES)
        } else {
            (&mut lookups_woken_at, &lookups_due, LOOKUPS_BEHIND_PAGES)
        };
        if pages < *woken_at {
            *woken_at = 0; // the log restarted
        }
        if pages >= INLINE_PAGES {
            if is_main {
                // Not while the thread records or checkpoints: it is doing this already.
                if let Some(Err(e)) =
                    changes.try_record_then(|| wal.checkpoint_v2(CheckpointMode::PASSIVE))
                {
                    tracing::debug!("WAL checkpoint in the writer: {e}");
                }
            } else if let Err(e) = wal.checkpoint_v2(CheckpointMode::PASSIVE) {
                tracing::debug!("WAL checkpoint of lookups in the writer: {e}");
            }
        } else if pages >= *woken_at + behind {
            *woken_at = pages;
            due.store(true, Ordering::SeqCst);
            let _ = wake.try_send(());
        }
        Ok(())
    }))?;
    Ok(())
}
