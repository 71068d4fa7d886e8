//! Lookups by a random key — message and part digests (SHA-256, MD5), senders, outbreak
//! cluster keys — in their own database file, `lookups.db`, attached as `lk`.
//!
//! Why a file of their own: a new message adds an entry at a random place of every such
//! lookup, so 1% more mail changed ~27% of the main database's pages (a leaf of each
//! lookup almost everywhere), and an incremental backup, which copies the pages changed
//! since the last one, copied them all. Everything here is derived from rows of the
//! main database (`messages`, `parts`, `fingerprints.held_keys`): a backup leaves the
//! file out, and it is rebuilt on the first start after a restore. The main database
//! keeps what grows at its end (rows in id order), so its changed pages after 1% more
//! mail are about 1% of them.
//!
//! Kept exact in the writer's own transaction: TEMP triggers on the writer's connection
//! (the only kind of trigger that may write to another attached database) mirror every
//! insert, update and delete of `messages` and `parts`; the clusterer writes
//! `cluster_keys` itself. SQLite commits the two files one after the other, so a crash
//! between them, or the loss of the last commits of this file (it is written without
//! an fsync per commit), could leave them apart: each commit of the writer that
//! changed this file bumps a counter in both files (`id_high.lookups` in the main one, `lookup_state.seq` here),
//! and a start that finds them different rebuilds the file from the main database. The
//! file can be deleted at any time.

use crate::Result;
use rusqlite::{params, Connection, OptionalExtension};
use std::path::Path;

pub(super) const FILE: &str = "lookups.db";

/// Attached to every connection under this name.
pub(super) const SCHEMA_NAME: &str = "lk";

/// The layout below; a file of another version is rebuilt.
const VERSION: i64 = 1;

/// Unqualified table names everywhere but `cluster_keys` (which older main databases
/// also had): the triggers' statements must name their tables unqualified, and SQLite
/// then finds them in whichever attached file holds them.
const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS lk.lookup_hashes(
    hash TEXT NOT NULL,
    message INTEGER NOT NULL,
    PRIMARY KEY(hash, message)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS lk.lookup_senders(
    address TEXT NOT NULL,
    message INTEGER NOT NULL,
    PRIMARY KEY(address, message)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS lk.cluster_keys(
    key INTEGER NOT NULL,
    message INTEGER NOT NULL,
    PRIMARY KEY(key, message)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS lk.lookup_state(key TEXT PRIMARY KEY, value INTEGER NOT NULL);
";

/// What the triggers do, in pieces (each trigger body is some of them, then `MARK`).
/// A message's digests and both its senders (envelope and From: header, lower-cased):
const MESSAGE_ADD: &str = "
    INSERT OR IGNORE INTO lookup_hashes(hash, message)
        SELECT new.sha256, new.id UNION ALL SELECT new.md5, new.id WHERE new.md5 IS NOT NULL;
    INSERT OR IGNORE INTO lookup_senders(address, message)
        SELECT lower(new.env_from), new.id UNION SELECT lower(new.hdr_from), new.id;";
/// ... removed only when no part of the message still has the digest:
const MESSAGE_DROP: &str = "
    DELETE FROM lookup_hashes WHERE hash IN (old.sha256, old.md5) AND message=old.id
        AND NOT EXISTS (SELECT 1 FROM parts p WHERE p.message=old.id
                        AND (p.sha256=lookup_hashes.hash OR p.md5=lookup_hashes.hash));
    DELETE FROM lookup_senders
        WHERE address IN (lower(old.env_from), lower(old.hdr_from)) AND message=old.id;";
/// A part's digests, filed under its message:
const PART_ADD: &str = "
    INSERT OR IGNORE INTO lookup_hashes(hash, message)
        SELECT new.sha256, new.message UNION ALL SELECT new.md5, new.message
        WHERE new.md5 IS NOT NULL;";
/// ... removed only when no other place of the message still has the digest:
const PART_DROP: &str = "
    DELETE FROM lookup_hashes WHERE hash IN (old.sha256, old.md5) AND message=old.message
        AND NOT EXISTS (SELECT 1 FROM parts p WHERE p.message=old.message
                        AND (p.sha256=lookup_hashes.hash OR p.md5=lookup_hashes.hash))
        AND NOT EXISTS (SELECT 1 FROM messages m WHERE m.id=old.message
                        AND (m.sha256=lookup_hashes.hash OR m.md5=lookup_hashes.hash));";
/// Marks the transaction as one that changed this file (in memory; see `bump_if_changed`).
const MARK: &str = "
    INSERT OR IGNORE INTO lookups_dirty(x) VALUES(1);";

/// The TEMP triggers, on the writer's connection only.
fn triggers() -> String {
    let trigger = |name: &str, event: &str, body: &[&str]| {
        format!(
            "CREATE TEMP TRIGGER IF NOT EXISTS {name} AFTER {event} BEGIN{}{MARK}\nEND;\n",
            body.concat()
        )
    };
    [
        "CREATE TEMP TABLE IF NOT EXISTS lookups_dirty(x INTEGER PRIMARY KEY);\n".to_string(),
        trigger(
            "lookups_message_in",
            "INSERT ON main.messages",
            &[MESSAGE_ADD],
        ),
        trigger(
            "lookups_message_out",
            "DELETE ON main.messages",
            &[MESSAGE_DROP],
        ),
        trigger(
            "lookups_message_change",
            "UPDATE OF sha256, md5, env_from, hdr_from ON main.messages",
            &[MESSAGE_DROP, MESSAGE_ADD],
        ),
        trigger("lookups_part_in", "INSERT ON main.parts", &[PART_ADD]),
        trigger("lookups_part_out", "DELETE ON main.parts", &[PART_DROP]),
        trigger(
            "lookups_part_change",
            "UPDATE OF sha256, md5 ON main.parts",
            &[PART_DROP, PART_ADD],
        ),
    ]
    .concat()
}

/// Run by the writer just before each COMMIT: bumps the counters of both files if the
/// transaction changed this one (see the module comment). Only then: a commit that
/// leaves this file alone (most background work) then writes nothing to its log.
pub(super) fn bump_if_changed(c: &Connection) -> rusqlite::Result<()> {
    let changed: bool = c
        .prepare_cached("SELECT EXISTS(SELECT 1 FROM temp.lookups_dirty)")?
        .query_row([], |r| r.get(0))?;
    if changed {
        c.prepare_cached("UPDATE id_high SET id=id+1 WHERE tbl='lookups'")?
            .execute([])?;
        c.prepare_cached("UPDATE lk.lookup_state SET value=value+1 WHERE key='seq'")?
            .execute([])?;
        c.prepare_cached("DELETE FROM temp.lookups_dirty")?
            .execute([])?;
    }
    Ok(())
}

/// Marks the writer's transaction as one that changed this file, for the writes the
/// triggers do not see (the clusterer's `cluster_keys`).
pub(super) fn mark_changed(c: &Connection) -> Result<()> {
    c.prepare_cached("INSERT OR IGNORE INTO temp.lookups_dirty(x) VALUES(1)")?
        .execute([])?;
    Ok(())
}

/// Starts a read transaction on `c` that sees the main database and this file at one
/// moment: SQLite commits attached files one after the other, so a reader that begins
/// on one file and then the other can fall between a commit's two halves and see a
/// message in one and not the other (`lazaret check` did, under load). A second
/// connection holds the write lock of both while `c` takes its two snapshots, so no
/// commit can be half done then; the writer waits for that moment only.
pub(super) fn begin_matching_read(c: &Connection, db_path: &Path, data_dir: &Path) -> Result<()> {
    let lock = super::open_connection(db_path)?;
    attach(&lock, data_dir)?;
    // IMMEDIATE takes the write lock of every attached file, in the order the writer
    // takes them (main first), once the writer's current commit is done with both.
    lock.execute_batch("BEGIN IMMEDIATE")?;
    let begun = c.execute_batch(
        "BEGIN;
         SELECT (SELECT COUNT(*) FROM main.id_high) + (SELECT COUNT(*) FROM lk.lookup_state);",
    );
    lock.execute_batch("ROLLBACK")?;
    Ok(begun?)
}

/// Indexes of the main database that this file replaces (stores from before it).
const FORMER_INDEXES: [&str; 6] = [
    "messages_env_from",
    "messages_hdr_from",
    "messages_sha256",
    "messages_md5",
    "parts_sha256",
    "parts_md5",
];

/// Attaches `data_dir/lookups.db` to the writer's connection `c` (creating it, or
/// rebuilding it when it does not match the main database), installs the triggers and
/// retires what older stores kept in the main database.
pub(super) fn open_for_writer(c: &Connection, data_dir: &Path) -> Result<()> {
    attach(c, data_dir)?;
    c.execute_batch(
        "PRAGMA lk.journal_mode=WAL;
         -- Rebuildable, and checked against the main database at every start: no fsync
         -- per commit (a lost tail is found and rebuilt; see the module comment).
         PRAGMA lk.synchronous=NORMAL;",
    )?;
    c.execute_batch(SCHEMA)?;
    c.execute(
        "INSERT OR IGNORE INTO id_high(tbl, id) VALUES('lookups', 0)",
        [],
    )?;
    let moved = move_former_cluster_keys(c)?;
    for index in FORMER_INDEXES {
        c.execute_batch(&format!("DROP INDEX IF EXISTS main.{index}"))?;
    }
    let state = |key: &str| -> Result<Option<i64>> {
        Ok(c.query_row(
            "SELECT value FROM lk.lookup_state WHERE key=?1",
            [key],
            |r| r.get(0),
        )
        .optional()?)
    };
    let main_seq: i64 = c.query_row("SELECT id FROM id_high WHERE tbl='lookups'", [], |r| {
        r.get(0)
    })?;
    let matches = state("version")? == Some(VERSION) && state("seq")? == Some(main_seq);
    if moved || !matches {
        rebuild(c, main_seq)?;
    }
    c.execute_batch(&triggers()).map_err(Into::into)
}

/// Attaches the file to a connection as `lk` (readers, the checkpoint thread).
pub(super) fn attach(c: &Connection, data_dir: &Path) -> Result<()> {
    c.execute(
        &format!("ATTACH DATABASE ?1 AS {SCHEMA_NAME}"),
        [data_dir.join(FILE).to_string_lossy()],
    )?;
    Ok(())
}

/// Every digest row the messages and parts call for, as (hash, message).
const EXPECTED_HASHES: &str = "SELECT sha256 AS hash, id AS message FROM messages
    UNION SELECT md5, id FROM messages WHERE md5 IS NOT NULL
    UNION SELECT sha256, message FROM parts
    UNION SELECT md5, message FROM parts WHERE md5 IS NOT NULL";
/// Every sender row the messages call for, as (address, message).
const EXPECTED_SENDERS: &str = "SELECT lower(env_from) AS address, id AS message FROM messages
    UNION SELECT lower(hdr_from), id FROM messages";

/// Messages some of whose digest or sender rows are missing here (`missing`), or that
/// have rows here they should not (`stale`), for `lazaret check`. Cluster keys are left
/// out: dead holders' keys are pruned by the clusterer as it goes.
pub(super) fn differences(c: &Connection, missing: bool) -> Result<Vec<i64>> {
    let sql = if missing {
        format!(
            "SELECT message FROM ({EXPECTED_HASHES} EXCEPT SELECT hash, message FROM lk.lookup_hashes)
             UNION SELECT message FROM ({EXPECTED_SENDERS}
                 EXCEPT SELECT address, message FROM lk.lookup_senders)"
        )
    } else {
        format!(
            // Compound selects associate to the left: the expected rows in a subquery.
            "SELECT message FROM (SELECT hash, message FROM lk.lookup_hashes
                 EXCEPT SELECT * FROM ({EXPECTED_HASHES}))
             UNION SELECT message FROM (SELECT address, message FROM lk.lookup_senders
                 EXCEPT SELECT * FROM ({EXPECTED_SENDERS}))"
        )
    };
    Ok(c.prepare(&sql)?
        .query_map([], |r| r.get(0))?
        .collect::<rusqlite::Result<_>>()?)
}

/// Refills the file from the main database in the caller's transaction (the writer's,
/// for `lazaret check --repair`) and records it as matching.
pub(super) fn refill(c: &Connection) -> Result<usize> {
    let main_seq: i64 = c.query_row("SELECT id FROM id_high WHERE tbl='lookups'", [], |r| {
        r.get(0)
    })?;
    fill(c, main_seq)
}

/// Refills the file from the main database in a transaction of its own, and records
/// it as matching.
fn rebuild(c: &Connection, main_seq: i64) -> Result<()> {
    let started = std::time::Instant::now();
    // A new store's first start builds an empty file: nothing to say.
    let say = c.prepare("SELECT 1 FROM messages LIMIT 1")?.exists([])?;
    if say {
        tracing::info!(
            "rebuilding {FILE} from the main database (missing, from another version, or \
             behind it); the listeners open when it is done"
        );
    }
    c.execute_batch("BEGIN IMMEDIATE")?;
    match fill(c, main_seq) {
        Ok(keys) => {
            c.execute_batch("COMMIT")?;
            // The whole file went through the log: give the disk space back now.
            let _ = c.execute_batch("PRAGMA lk.wal_checkpoint(TRUNCATE)");
            if say {
                tracing::info!(
                    "rebuilt {FILE} from the main database ({keys} cluster keys) in {:.1} s",
                    started.elapsed().as_secs_f64()
                );
            }
            Ok(())
        }
        Err(e) => {
            let _ = c.execute_batch("ROLLBACK");
            Err(e)
        }
    }
}

/// Empties the file and fills it again in key order (sorted inserts fill each page
/// once); returns the number of cluster keys.
fn fill(c: &Connection, main_seq: i64) -> Result<usize> {
    c.execute_batch(&format!(
        "DELETE FROM lk.lookup_hashes;
         DELETE FROM lk.lookup_senders;
         DELETE FROM lk.cluster_keys;
         INSERT INTO lk.lookup_hashes(hash, message) {EXPECTED_HASHES} ORDER BY 1, 2;
         INSERT INTO lk.lookup_senders(address, message) {EXPECTED_SENDERS} ORDER BY 1, 2;"
    ))?;
    let mut keys: Vec<(i64, i64)> = Vec::new();
    {
        let mut stmt =
            c.prepare("SELECT message, held_keys FROM fingerprints WHERE held_keys IS NOT NULL")?;
        let mut rows = stmt.query([])?;
        while let Some(r) = rows.next()? {
            let message: i64 = r.get(0)?;
            let held = r.get_ref(1)?.as_blob().unwrap_or_default();
            keys.extend(decode_keys(held).map(|k| (k, message)));
        }
    }
    keys.sort_unstable();
    keys.dedup();
    let mut insert =
        c.prepare("INSERT OR IGNORE INTO lk.cluster_keys(key, message) VALUES(?1, ?2)")?;
    for (key, message) in &keys {
        insert.execute(params![key, message])?;
    }
    c.execute(
        "INSERT OR REPLACE INTO lk.lookup_state(key, value) VALUES('version', ?1), ('seq', ?2)",
        params![VERSION, main_seq],
    )?;
    Ok(keys.len())
}

/// Keys a message holds, as `fingerprints.held_keys` keeps them: 8 bytes each,
/// little-endian.
pub(super) fn encode_keys(keys: &[i64]) -> Option<Vec<u8>> {
    (!keys.is_empty()).then(|| keys.iter().flat_map(|k| k.to_le_bytes()).collect())
}

fn decode_keys(bytes: &[u8]) -> impl Iterator<Item = i64> + '_ {
    bytes
        .chunks_exact(8)
        .map(|b| i64::from_le_bytes(b.try_into().unwrap_or_default()))
}

/// Stores from before this file kept `cluster_keys` in the main database: each
/// message's keys go to its fingerprint row (from which the file is built), and the
/// table goes. Returns whether there was one.
fn move_former_cluster_keys(c: &Connection) -> Result<bool> {
    let present = c
        .prepare("SELECT 1 FROM main.sqlite_schema WHERE type='table' AND name='cluster_keys'")?
        .exists([])?;
    if !present {
        return Ok(false);
    }
    c.execute_batch("BEGIN IMMEDIATE")?;
    let moved = (|| -> Result<()> {
        let mut update = c.prepare("UPDATE fingerprints SET held_keys=?2 WHERE message=?1")?;
        let mut stmt =
            c.prepare("SELECT message, key FROM main.cluster_keys ORDER BY message, key")?;
        let mut rows = stmt.query([])?;
        let mut current: Option<(i64, Vec<i64>)> = None;
        while let Some(r) = rows.next()? {
            let (message, key): (i64, i64) = (r.get(0)?, r.get(1)?);
            match &mut current {
                Some((m, keys)) if *m == message => keys.push(key),
                _ => {
                    if let Some((m, keys)) = current.take() {
                        update.execute(params![m, encode_keys(&keys)])?;
                    }
                    current = Some((message, vec![key]));
                }
            }
        }
        if let Some((m, keys)) = current {
            update.execute(params![m, encode_keys(&keys)])?;
        }
        drop(rows);
        drop(stmt);
        c.execute_batch("DROP TABLE main.cluster_keys")?;
        Ok(())
    })();
    match moved {
        Ok(()) => {
            c.execute_batch("COMMIT")?;
            Ok(true)
        }
        Err(e) => {
            let _ = c.execute_batch("ROLLBACK");
            Err(e)
        }
    }
}
