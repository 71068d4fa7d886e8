//! The substring index over subjects and message text (FTS5, trigram tokenizer), kept
//! behind the commit: in its own database file `text.db`, filled by a background
//! thread in large batches.
//!
//! Why not in the ingest transaction: FTS5 tokenises every character of the text and
//! writes out a new index segment at every savepoint, and the writer runs each request
//! in one, so indexing there cost a segment per message plus the merges behind it, all
//! on the single writer thread every SMTP `250` waits for. Here the writer only stores
//! the message; the indexer catches up a few hundred messages per transaction, at a
//! lower CPU priority than the sessions, without taking the main database's write lock.
//!
//! The file is written without fsync (`synchronous=OFF`): a crash of the process loses
//! nothing that reached the page cache, and after a crash of the machine itself (a new
//! boot id without a clean close recorded) the index is rebuilt.
//!
//! `find` never misses a message for it: messages above the indexer's watermark
//! (`text_state.through`) are matched directly — subjects from the `messages` row, text
//! from the copy kept here since ingest or, after a restart, from the blob. Message ids
//! are never reused (see `unreferenced`), so everything at or below the watermark is in
//! the index. The file can be deleted at any time: it is rebuilt from the blobs.

use super::blobs::{BlobRef, Blobs};
use super::writer::Writer;
use crate::{io_err, Result};
use rusqlite::{params, Connection, OptionalExtension};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

pub(super) const FILE: &str = "text.db";

/// Attached to every read connection under this name.
pub(super) const SCHEMA_NAME: &str = "t";

const SCHEMA: &str = "
CREATE VIRTUAL TABLE IF NOT EXISTS text_index USING fts5(
    subject, body, tokenize='trigram', content='', contentless_delete=1);
-- through: every message with an id at or below it is in text_index.
CREATE TABLE IF NOT EXISTS text_state(key TEXT PRIMARY KEY, value INTEGER NOT NULL);
";

/// Messages indexed per transaction: large enough that FTS5 writes one segment for
/// hundreds of messages, small enough that a find never waits long for the file.
const BATCH: usize = 256;
/// The indexer waits until no message has been accepted for this long: indexing is
/// CPU and disk work no SMTP client waits for, and on a small machine it lengthens the
/// sessions' tail latency if it runs beside them, even at `SCHED_IDLE` (measured on 2
/// vCPUs, 20 sessions at 400 msgs/s: p99 end-of-DATA to `250` 2.2–2.5 ms with it
/// running along, 1.6–1.9 ms with it stopped). Mail comes in bursts; the index catches
/// up in the gaps between them, and `find` matches the not-yet-indexed tail directly.
const QUIET: Duration = Duration::from_millis(300);
/// ... but not for ever: once this many messages wait, the indexer works through the
/// backlog under load too (down to a quarter of it), so that the cost of `find` on the
/// not-yet-indexed tail stays bounded in a flood that never pauses. Counted in
/// messages, not in text kept in memory: texts that find no room in `CACHE_BYTES` are
/// read from their blobs again later, which costs CPU in a quiet moment, while any work
/// beside the sessions costs tail latency (on 2 vCPUs even a `SCHED_IDLE` busy loop
/// raised the p99 end-of-DATA to `250` at 400 msgs/s from 1.3–2.0 ms to 1.3–3.2 ms).
const DEFER_MESSAGES: u64 = 20_000;
/// Text kept in memory for messages not yet indexed; beyond it the indexer reads the
/// blob again (a flood must not grow memory without bound).
const CACHE_BYTES: usize = 64 << 20;

/// The text of messages accepted but not yet indexed, by blob id, with when it was
/// kept.
#[derive(Default)]
struct Cache {
    texts: HashMap<String, (Arc<str>, Instant)>,
    bytes: usize,
    /// When the last message was accepted, for the quiet-period rule (`QUIET`).
    last_accepted: Option<Instant>,
}

impl Cache {
    fn remove(&mut self, uid: &str) {
        if let Some((t, _)) = self.texts.remove(uid) {
            self.bytes -= t.len();
        }
    }

    /// Drops texts of messages that were deleted before the indexer got to them.
    fn expire(&mut self) {
        let before = self.texts.len();
        self.texts.retain(|_, (_, at)| at.elapsed() < STALE);
        if self.texts.len() != before {
            self.bytes = self.texts.values().map(|(t, _)| t.len()).sum();
        }
    }
}

/// A kept text older than this belongs to a message deleted before it was indexed.
const STALE: Duration = Duration::from_secs(120);

struct Shared {
    cache: Mutex<Cache>,

    blobs: Arc<Blobs>,
    /// Set by `reset`: the indexer empties the index and starts again from the first
    /// message.
    reset: AtomicBool,
    /// Set by `close`: the indexer makes the file durable, records a clean close and
    /// ends.
    closing: AtomicBool,
}

impl Shared {
    fn cache(&self) -> std::sync::MutexGuard<'_, Cache> {
        self.cache.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Whether the indexer should hold back (see `hold_back`).
    fn holding_back(&self, backlog: u64, catching_up: &mut bool) -> bool {
        let accepting = self
            .cache()
            .last_accepted
            .is_some_and(|t| t.elapsed() < QUIET);
        hold_back(accepting, backlog, catching_up)
    }

    /// The searchable text of a message: the copy kept since ingest, else its blob's.
    fn text_of(&self, blob: &BlobRef) -> Option<Arc<str>> {
        if let Some((t, _)) = self.cache().texts.get(&blob.uid) {
            return Some(t.clone());
        }
        let raw = self.blobs.read(blob).ok()?;
        let text = mail_parser::MessageParser::default()
            .parse(&raw)
            .map(|m| lazaret_scan::text::searchable_text(&m))
            .unwrap_or_default();
        Some(text.into())
    }
}

pub(super) struct TextIndex {
    path: PathBuf,
    shared: Arc<Shared>,
    wake: mpsc::SyncSender<()>,
    thread: Mutex<Option<std::thread::JoinHandle<()>>>,
}

impl TextIndex {
    /// Opens (creating if needed) `data_dir/text.db` and starts the indexer thread,
    /// which stops when this is dropped.
    pub(super) fn open(
        data_dir: &Path,
        main_db: &Path,
        blobs: Arc<Blobs>,
        writer: Writer,
    ) -> Result<TextIndex> {
        let path = data_dir.join(FILE);
        let boot = boot_id();
        let opened = open_index(&path).and_then(|c| {
            let (last_boot, clean) = last_run(&c)?;
            if boot.is_some() && last_boot.is_some() && last_boot != boot && !clean {
                return Err(crate::StoreError::Invalid(
                    "the machine restarted without a clean close".into(),
                ));
            }
            Ok(c)
        });
        let index = match opened {
            Ok(c) => c,
            Err(e) => {
                // Only an index: a damaged one is rebuilt, not a reason to refuse to start.
                tracing::warn!(
                    "text index {} unusable ({e}); rebuilding it",
                    path.display()
                );
                for suffix in ["", "-wal", "-shm"] {
                    let mut p = path.clone().into_os_string();
                    p.push(suffix);
                    let _ = std::fs::remove_file(p);
                }
                open_index(&path)?
            }
        };
        // From now until `close`, the file may be ahead of what is on disk.
        index.execute_batch("PRAGMA synchronous=FULL")?;
        index.execute(
            "INSERT OR REPLACE INTO text_state(key, value) VALUES('boot', ?1), ('clean', 0)",
            [boot.as_deref().unwrap_or("")],
        )?;
        drop(index);
        let shared = Arc::new(Shared {
            cache: Mutex::new(Cache::default()),
            blobs,
            reset: AtomicBool::new(false),
            closing: AtomicBool::new(false),
        });
        // One pending wake-up is enough: the indexer looks for all the work there is.
        let (wake, rx) = mpsc::sync_channel(1);
        let (thread_shared, main_db, text_db) =
            (shared.clone(), main_db.to_path_buf(), path.clone());
        let thread = std::thread::Builder::new()
            .name("text-indexer".into())
            .spawn(move || run(&thread_shared, &rx, &main_db, &text_db, &writer))
            .map_err(io_err("start the text indexer thread"))?;
        let _ = wake.try_send(());
        Ok(TextIndex {
            path,
            shared,
            wake,
            thread: Mutex::new(Some(thread)),
        })
    }

    /// Stops the indexer after its current batch and makes the file durable, so that a
    /// later boot trusts it.
    pub(super) fn close(&self) {
        self.shared.closing.store(true, Ordering::SeqCst);
        self.wake();
        let thread = self.thread.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(t) = thread {
            let _ = t.join();
        }
    }

    /// Keeps a just-accepted message's text for the indexer and for `find` until it is
    /// indexed (so neither has to parse the blob again).
    pub(super) fn remember(&self, uid: &str, text: String) {
        let mut cache = self.shared.cache();
        cache.last_accepted = Some(Instant::now());
        if cache.bytes + text.len() <= CACHE_BYTES {
            cache.bytes += text.len();
            cache
                .texts
                .insert(uid.to_string(), (text.into(), Instant::now()));
        }
    }

    /// Drops the text of a message that was not stored after all.
    pub(super) fn forget(&self, uid: &str) {
        self.shared.cache().remove(uid);
    }

    /// New messages were committed (or deleted): the indexer has work.
    pub(super) fn wake(&self) {
        let _ = self.wake.try_send(());
    }

    /// Empties the index; the indexer rebuilds it from every message's blob.
    pub(super) fn reset(&self) {
        self.shared.reset.store(true, Ordering::SeqCst);
        self.wake();
    }

    /// Attaches the index to a read connection (as `t`) and registers
    /// `text_tail_match(column, needle, subject, uid, blob_pack, blob_offset, size)`,
    /// which matches a message the index does not hold yet the way the index would.
    pub(super) fn attach(&self, c: &Connection) -> rusqlite::Result<()> {
        c.execute(
            &format!("ATTACH DATABASE ?1 AS {SCHEMA_NAME}"),
            [self.path.to_string_lossy()],
        )?;
        let shared = self.shared.clone();
        c.create_scalar_function(
            "text_tail_match",
            7,
            rusqlite::functions::FunctionFlags::SQLITE_UTF8,
            move |ctx| {
                let column = ctx.get_raw(0).as_str().unwrap_or("");
                let needle = ctx.get_raw(1).as_str().unwrap_or("").to_lowercase();
                Ok(match column {
                    "subject" => contains_folded(ctx.get_raw(2).as_str().unwrap_or(""), &needle),
                    _ => {
                        let blob = BlobRef {
                            uid: ctx.get::<String>(3)?,
                            at: ctx
                                .get::<Option<u32>>(4)?
                                .zip(ctx.get::<Option<i64>>(5)?)
                                .map(|(pack, offset)| super::BlobLocation {
                                    pack,
                                    offset: offset as u64,
                                }),
                            len: ctx.get::<i64>(6)? as u64,
                        };
                        shared
                            .text_of(&blob)
                            .is_some_and(|t| contains_folded(&t, &needle))
                    }
                })
            },
        )
    }

    /// Messages above the watermark: accepted but not yet in the index.
    pub(super) fn behind(&self, c: &Connection) -> Result<u64> {
        Ok(c.query_row(
            &format!(
                "SELECT COUNT(*) FROM messages WHERE id >
                   COALESCE((SELECT value FROM {SCHEMA_NAME}.text_state WHERE key='through'), 0)"
            ),
            [],
            |r| r.get::<_, i64>(0),
        )? as u64)
    }

    pub(super) fn path(&self) -> &Path {
        &self.path
    }
}

/// The SQL condition "message `m` has `needle` in `column`" (subject or body), answered
/// from the index up to its watermark and directly above it. Its parameters: the FTS5
/// phrase, then (`windowed`) the message ids `(after, through]` it is limited to, twice,
/// then the needle. In a window FTS5 reads only that stretch of each trigram's list:
/// the first 51 of 50,000 body matches at 1M messages in 5 ms, all of them in 540 ms.
pub(super) fn condition(column: &str, windowed: bool) -> String {
    let (in_index, in_tail) = if windowed {
        (" WHERE rowid > ? AND rowid <= ?", " AND id > ? AND id <= ?")
    } else {
        ("", "")
    };
    format!(
        "m.id IN (SELECT rowid FROM {s}.text_index(?){in_index}
                  UNION ALL
                  SELECT id FROM messages
                  WHERE id > COALESCE((SELECT value FROM {s}.text_state WHERE key='through'), 0){in_tail}
                    AND text_tail_match('{column}', ?, subject, uid, blob_pack, blob_offset, size))",
        s = SCHEMA_NAME
    )
}

/// Case-insensitive substring test, as the trigram tokenizer (case folding, no
/// diacritics removal) answers it. `needle` is already lower case.
fn contains_folded(haystack: &str, needle: &str) -> bool {
    haystack.to_lowercase().contains(needle)
}

fn open_index(path: &Path) -> Result<Connection> {
    let c = Connection::open(path)?;
    c.busy_timeout(Duration::from_secs(10))?;
    c.pragma_update(None, "journal_mode", "WAL")?;
    // Rebuildable: no fsync, not even at checkpoints; see the module comment for why
    // that is safe. Without a boot id to tell a machine crash, it keeps the fsyncs of
    // checkpoints.
    let sync = if boot_id().is_some() { "OFF" } else { "NORMAL" };
    c.pragma_update(None, "synchronous", sync)?;
    c.execute_batch(SCHEMA)?;
    Ok(c)
}

/// The kernel's id of this boot (Linux), to tell a process restart from a machine's.
fn boot_id() -> Option<String> {
    std::fs::read_to_string("/proc/sys/kernel/random/boot_id")
        .ok()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
}

/// The boot id of the run that last opened the index, and whether it closed cleanly.
fn last_run(c: &Connection) -> Result<(Option<String>, bool)> {
    let get = |key: &str| -> Result<Option<rusqlite::types::Value>> {
        Ok(
            c.query_row("SELECT value FROM text_state WHERE key=?1", [key], |r| {
                r.get(0)
            })
            .optional()?,
        )
    };
    let boot = match get("boot")? {
        Some(rusqlite::types::Value::Text(t)) if !t.is_empty() => Some(t),
        _ => None,
    };
    let clean = matches!(get("clean")?, Some(rusqlite::types::Value::Integer(1)));
    Ok((boot, clean))
}

/// Makes the file durable and records that this run closed it cleanly.
fn close_cleanly(text: &Connection) -> Result<()> {
    text.execute_batch(
        "PRAGMA synchronous=FULL; PRAGMA wal_checkpoint(TRUNCATE);
         INSERT OR REPLACE INTO text_state(key, value) VALUES('clean', 1);",
    )?;
    Ok(())
}

fn run(
    shared: &Shared,
    wake: &mpsc::Receiver<()>,
    main_db: &Path,
    text_db: &Path,
    writer: &Writer,
) {
    super::lower_priority();
    let connections =
        super::open_read_only(main_db).and_then(|main| Ok((main, open_index(text_db)?)));
    let (main, text) = match connections {
        Ok(c) => c,
        Err(e) => {
            tracing::error!("text indexer cannot start: {e}; find falls back to reading messages");
            return;
        }
    };
    loop {
        // Looked at before every wait, not only on a wake-up: the drain below may
        // swallow the one `close` sent.
        let mut closing = shared.closing.load(Ordering::SeqCst);
        if !closing {
            match wake.recv_timeout(Duration::from_secs(5)) {
                Err(mpsc::RecvTimeoutError::Disconnected) => closing = true,
                _ => closing = shared.closing.load(Ordering::SeqCst),
            }
        }
        if closing {
            if let Err(e) = close_cleanly(&text) {
                tracing::warn!("text index not closed cleanly: {e}");
            }
            return;
        }
        while wake.try_recv().is_ok() {}
        let mut catching_up = false;
        loop {
            if shared.closing.load(Ordering::SeqCst) {
                break;
            }
            let backlog = backlog(&main, &text).unwrap_or(u64::MAX);
            if shared.holding_back(backlog, &mut catching_up) {
                std::thread::sleep(QUIET / 3);
                continue;
            }
            match index_batch(shared, &main, &text, writer) {
                Ok(true) => continue,
                Ok(false) => break,
                Err(e) => {
                    tracing::error!("text indexer: {e}");
                    std::thread::sleep(Duration::from_secs(1));
                    break;
                }
            }
        }
    }
}

/// Whether the indexer should hold back: messages are arriving and fewer than
/// `DEFER_MESSAGES` wait (`backlog`). `catching_up` (the backlog reached its bound under
/// load) lowers the bound to a quarter, so that work is done in long runs, not one batch
/// at a time.
fn hold_back(accepting: bool, backlog: u64, catching_up: &mut bool) -> bool {
    *catching_up = accepting
        && if *catching_up {
            backlog >= DEFER_MESSAGES / 4
        } else {
            backlog >= DEFER_MESSAGES
        };
    accepting && !*catching_up
}

/// How many messages wait for the indexer (ids are never reused, so the distance from
/// the watermark to the newest id bounds it).
fn backlog(main: &Connection, text: &Connection) -> Result<u64> {
    let newest: i64 = main
        .prepare_cached("SELECT COALESCE(MAX(id), 0) FROM messages")?
        .query_row([], |r| r.get(0))?;
    Ok(newest.saturating_sub(watermark(text)?).max(0) as u64)
}

/// `text_state.through`: every message at or below it is in the index.
fn watermark(text: &Connection) -> Result<i64> {
    Ok(text
        .prepare_cached("SELECT value FROM text_state WHERE key='through'")?
        .query_row([], |r| r.get(0))
        .optional()?
        .unwrap_or(0))
}

/// One transaction of index work: removals first, then up to BATCH new messages.
/// Returns whether there may be more to do.
fn index_batch(
    shared: &Shared,
    main: &Connection,
    text: &Connection,
    writer: &Writer,
) -> Result<bool> {
    if shared.reset.swap(false, Ordering::SeqCst) {
        text.execute_batch(
            "BEGIN; INSERT INTO text_index(text_index) VALUES('delete-all');
             DELETE FROM text_state; COMMIT;",
        )?;
    }
    let through = watermark(text)?;
    // Removals are read before additions: a message deleted after this read is then
    // either not among the additions or removed again by the next batch.
    let removed: Vec<i64> = main
        .prepare_cached("SELECT message FROM text_deleted ORDER BY message LIMIT 5000")?
        .query_map([], |r| r.get(0))?
        .collect::<rusqlite::Result<_>>()?;
    let added: Vec<(i64, BlobRef, String)> = main
        .prepare_cached(
            "SELECT id, uid, blob_pack, blob_offset, size, subject FROM messages
             WHERE id>?1 ORDER BY id LIMIT ?2",
        )?
        .query_map(params![through, BATCH as i64], |r| {
            Ok((r.get(0)?, super::blob_ref_of(r, 1)?, r.get(5)?))
        })?
        .collect::<rusqlite::Result<_>>()?;
    if removed.is_empty() && added.is_empty() {
        return Ok(false);
    }
    let texts: Vec<Arc<str>> = added
        .iter()
        .map(|(_, blob, _)| shared.text_of(blob).unwrap_or_else(|| "".into()))
        .collect();
    let tx = text.unchecked_transaction()?;
    for chunk in removed.chunks(500) {
        // Integers only: nothing to quote. One statement per few hundred rows, not per
        // row: FTS5 flushes pending changes at every statement.
        let list = chunk
            .iter()
            .map(i64::to_string)
            .collect::<Vec<_>>()
            .join(",");
        tx.execute(
            &format!("DELETE FROM text_index WHERE rowid IN ({list})"),
            [],
        )?;
    }
    {
        let mut insert =
            tx.prepare_cached("INSERT INTO text_index(rowid, subject, body) VALUES(?1, ?2, ?3)")?;
        for ((id, _, subject), body) in added.iter().zip(&texts) {
            insert.execute(params![id, subject, &**body])?;
        }
    }
    if let Some((last, _, _)) = added.last() {
        tx.execute(
            "INSERT OR REPLACE INTO text_state(key, value) VALUES('through', ?1)",
            [last],
        )?;
    }
    tx.commit()?;
    {
        let mut cache = shared.cache();
        for (_, blob, _) in &added {
            cache.remove(&blob.uid);
        }
        cache.expire();
    }
    if !removed.is_empty() {
        let more = removed.len() == 5000;
        writer.write(move |c| {
            let mut done = c.prepare_cached("DELETE FROM text_deleted WHERE message=?1")?;
            for id in removed {
                done.execute([id])?;
            }
            Ok(())
        })?;
        if more {
            return Ok(true);
        }
    }
    Ok(added.len() == BATCH)
}

#[cfg(test)]
mod tests {
    use super::{hold_back, DEFER_MESSAGES};

    #[test]
    fn indexes_at_once_when_quiet_and_defers_under_load_up_to_the_bound() {
        let mut catching_up = false;
        assert!(!hold_back(false, 1, &mut catching_up), "quiet: index now");
        assert!(hold_back(true, DEFER_MESSAGES - 1, &mut catching_up));
        assert!(!catching_up);
        assert!(
            !hold_back(true, DEFER_MESSAGES, &mut catching_up),
            "bound reached"
        );
        assert!(catching_up);
    }

    #[test]
    fn a_catch_up_under_load_runs_down_to_a_quarter_of_the_bound() {
        let mut catching_up = false;
        assert!(!hold_back(true, DEFER_MESSAGES + 5, &mut catching_up));
        assert!(!hold_back(true, DEFER_MESSAGES / 2, &mut catching_up));
        assert!(!hold_back(true, DEFER_MESSAGES / 4, &mut catching_up));
        assert!(hold_back(true, DEFER_MESSAGES / 4 - 1, &mut catching_up));
        assert!(!catching_up);
        // Deferring again until the full bound, not at the quarter.
        assert!(hold_back(true, DEFER_MESSAGES / 2, &mut catching_up));
        // A quiet moment ends any catch-up: everything is indexed.
        catching_up = true;
        assert!(!hold_back(false, 0, &mut catching_up));
        assert!(!catching_up);
    }
}
