//! The single-machine store: SQLite (WAL, synchronous=FULL) for metadata, one file per
//! message body. Reads use a small pool of connections; every write goes through the
//! group-commit [`writer::Writer`].

mod blobs;
mod checkpoint;
mod compaction;
mod find;
mod folders;
mod outbound;
mod quarantine;
mod reindex;
mod scanning;
mod schema;
mod text_index;
mod writer;

pub use outbound::OUTBOUND_DISABLED;
pub use reindex::ReindexBatch;

use crate::metadata::{Digests, MessageMetadata};
use crate::model::*;
use crate::{now, password, Result, Store, StoreError};
pub use blobs::Location as BlobLocation;
use blobs::{BlobRef, Blobs};
use lazaret_core::state::{QUEUE_INBOUND, QUEUE_LOCAL, SYSTEM_QUEUES};
use lazaret_core::QueueState;
use rusqlite::{params, Connection, OptionalExtension};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use text_index::TextIndex;
use writer::Writer;

/// Read connections kept for reuse; more may exist during a burst, but each holds its
/// own page cache, so the surplus is closed after use to keep memory flat.
const POOLED_READERS: usize = 8;

pub struct EmbeddedStore {
    db_path: PathBuf,
    blobs: Arc<Blobs>,
    writer: Writer,
    readers: Mutex<Vec<Connection>>,
    text: TextIndex,
    _compactor: compaction::Compactor,
}

fn open_connection(path: &Path) -> Result<Connection> {
    let conn = Connection::open(path)?;
    conn.busy_timeout(std::time::Duration::from_secs(10))?;
    // Statement journals (every multi-row change keeps one) in memory, not temp files.
    conn.execute_batch(
        "PRAGMA synchronous=FULL; PRAGMA foreign_keys=ON; PRAGMA temp_store=MEMORY;",
    )?;
    find::register_functions(&conn)?;
    Ok(conn)
}

/// A connection for a background thread that only reads.
fn open_read_only(path: &Path) -> Result<Connection> {
    let conn = Connection::open_with_flags(
        path,
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    conn.busy_timeout(std::time::Duration::from_secs(10))?;
    Ok(conn)
}

/// For background threads (text index, compaction): below the sessions and the writer,
/// so they use what CPU mail leaves over.
fn lower_priority() {
    #[cfg(target_os = "linux")]
    // SAFETY: plain syscalls on the calling thread; no memory is passed.
    unsafe {
        let tid = libc::syscall(libc::SYS_gettid) as libc::id_t;
        libc::setpriority(libc::PRIO_PROCESS, tid, 10);
    }
}

/// A new message store id: 16 random hex digits (the blob's name, "queued as").
pub fn new_message_id() -> String {
    hex::encode(rand::random::<[u8; 8]>())
}

/// Splits `local@domain` and lower-cases it; None if it is not an address.
pub fn normalize_address(address: &str) -> Option<(String, String)> {
    let address = address.trim().to_ascii_lowercase();
    let (local, domain) = address.rsplit_once('@')?;
    let ok_local =
        !local.is_empty() && !local.contains(|c: char| c.is_whitespace() || c == '<' || c == '>');
    let ok_domain = !domain.is_empty()
        && domain
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.');
    (ok_local && ok_domain).then(|| (format!("{local}@{domain}"), domain.to_string()))
}

fn valid_domain(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 253
        && name.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        })
}

impl EmbeddedStore {
    /// Opens (creating if needed) the store under `data_dir`. A new store gets the
    /// local domain `localhost`, so built-in defaults can take mail at once.
    pub fn open(data_dir: &Path) -> Result<EmbeddedStore> {
        Self::open_with_pack_limit(data_dir, blobs::PACK_LIMIT)
    }

    /// As `open`, closing pack files at `pack_limit` bytes (tests use small packs).
    pub(crate) fn open_with_pack_limit(data_dir: &Path, pack_limit: u64) -> Result<EmbeddedStore> {
        std::fs::create_dir_all(data_dir)
            .map_err(crate::io_err(format!("create {}", data_dir.display())))?;
        let db_path = data_dir.join("lazaret.db");
        let mut conn = open_connection(&db_path)?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.execute_batch(schema::SCHEMA)?;
        for (table, column, definition) in schema::ADDED_COLUMNS {
            let present = conn
                .prepare(&format!(
                    "SELECT 1 FROM pragma_table_info('{table}') WHERE name=?1"
                ))?
                .exists([column])?;
            if !present {
                conn.execute_batch(&format!(
                    "ALTER TABLE {table} ADD COLUMN {column} {definition}"
                ))?;
            }
        }
        conn.execute_batch(schema::LATE_INDEXES)?;
        // Stores from before the text index moved to its own file: the indexer
        // rebuilds it there from the blobs.
        conn.execute_batch("DROP TABLE IF EXISTS text_index")?;
        // The writer's page cache (default 2 MB) holds a batch's dirty pages: smaller,
        // and a bulk action spills them to the WAL mid-transaction.
        conn.pragma_update(None, "cache_size", -32768)?;
        let fresh: bool = conn
            .query_row("SELECT value FROM settings WHERE key='created'", [], |r| {
                r.get::<_, String>(0)
            })
            .optional()?
            .is_none();
        if fresh {
            conn.execute(
                "INSERT INTO settings(key, value) VALUES('created', ?1)",
                [now().to_string()],
            )?;
            conn.execute(
                "INSERT OR IGNORE INTO domains(name, created) VALUES('localhost', ?1)",
                [now()],
            )?;
        }
        let blobs = Arc::new(Blobs::open(data_dir.join("blobs"), pack_limit)?);
        checkpoint::install(&mut conn, &db_path)?;
        let writer = Writer::start(conn);
        let text = TextIndex::open(data_dir, &db_path, blobs.clone(), writer.clone())?;
        let compactor = compaction::Compactor::start(blobs.clone(), writer.clone(), &db_path);
        Ok(EmbeddedStore {
            db_path,
            blobs,
            writer,
            readers: Mutex::new(Vec::new()),
            text,
            _compactor: compactor,
        })
    }

    /// Compacts mostly-dead packs now (the background thread does it every minute);
    /// returns how many pack files were removed.
    pub fn compact_packs(&self) -> Result<u64> {
        self.read(|c| compaction::compact(&self.blobs, &self.writer, c))
    }

    fn open_reader(&self) -> Result<Connection> {
        let conn = open_connection(&self.db_path)?;
        self.text.attach(&conn)?;
        Ok(conn)
    }

    /// Removes the file of a message whose row is gone, in stores from before packs
    /// (`unreferenced` names only those; bytes in packs go with compaction).
    fn discard_blob(&self, uid: &str) {
        self.blobs.remove_legacy(uid);
    }

    /// Appends a prepared message's bytes to the packs, durably, and notes where.
    fn write_blob(&self, p: &mut Prepared) -> Result<()> {
        p.location = Some(self.blobs.write(&p.incoming.id, &p.incoming.data)?);
        Ok(())
    }

    /// Where a message's bytes are, by its store id.
    fn blob_ref(&self, uid: &str) -> Result<BlobRef> {
        if uid.len() < 2 || !uid.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(StoreError::NotFound("no such message".into()));
        }
        let key = uid.to_string();
        self.read(move |c| {
            c.prepare_cached("SELECT uid, blob_pack, blob_offset, size FROM messages WHERE uid=?1")?
                .query_row([&key], |r| blob_ref_of(r, 0))
                .optional()?
                .ok_or_else(|| StoreError::NotFound("no such message".into()))
        })
    }

    /// Reads a message's bytes with `read`; if compaction moved them between the
    /// lookup and the read, looks again.
    fn with_blob<R>(&self, uid: &str, read: impl Fn(&BlobRef) -> Result<R>) -> Result<R> {
        let blob = self.blob_ref(uid)?;
        match read(&blob) {
            Err(StoreError::Io { .. }) if blob.at.is_some() => read(&self.blob_ref(uid)?),
            result => result,
        }
    }

    fn read<R>(&self, f: impl FnOnce(&Connection) -> Result<R>) -> Result<R> {
        let pooled = self.readers.lock().unwrap_or_else(|e| e.into_inner()).pop();
        let conn = match pooled {
            Some(c) => c,
            None => self.open_reader()?,
        };
        let result = f(&conn);
        let mut pool = self.readers.lock().unwrap_or_else(|e| e.into_inner());
        if pool.len() < POOLED_READERS {
            pool.push(conn);
        }
        result
    }

    fn write<R: Send + 'static>(
        &self,
        f: impl FnOnce(&Connection) -> Result<R> + Send + 'static,
    ) -> Result<R> {
        self.writer.write(f)
    }

    /// Items of `queue` that are due now, with their recipients.
    fn due_items(&self, queue: &str, limit: usize) -> Result<Vec<(i64, Vec<String>)>> {
        self.due_items_where(queue, limit, false)
    }

    /// `scanned_only`: leave out messages the scanner has not stamped yet.
    fn due_items_where(
        &self,
        queue: &str,
        limit: usize,
        scanned_only: bool,
    ) -> Result<Vec<(i64, Vec<String>)>> {
        let queue = queue.to_string();
        self.read(move |c| {
            let mut items = c.prepare_cached(
                "SELECT q.id FROM queue_items q JOIN messages m ON m.id=q.message
                 WHERE q.queue=?1 AND q.state IN ('ready','retry') AND q.next_attempt<=?2
                   AND (NOT ?4 OR m.scan_version IS NOT NULL)
                   AND NOT EXISTS (SELECT 1 FROM queues WHERE name=?1 AND state='frozen')
                 ORDER BY q.next_attempt LIMIT ?3",
            )?;
            let ids: Vec<i64> = items
                .query_map(params![queue, now(), limit as i64, scanned_only], |r| {
                    r.get(0)
                })?
                .collect::<rusqlite::Result<_>>()?;
            let mut rcpts = c.prepare_cached("SELECT address FROM queue_rcpts WHERE item=?1")?;
            ids.into_iter()
                .map(|id| {
                    let list = rcpts
                        .query_map([id], |r| r.get(0))?
                        .collect::<rusqlite::Result<Vec<String>>>()?;
                    Ok((id, list))
                })
                .collect()
        })
    }

    fn summaries(&self, sql: &'static str, args: Vec<String>) -> Result<Vec<MessageSummary>> {
        self.read(move |c| {
            let mut stmt = c.prepare_cached(sql)?;
            let rows = stmt.query_map(rusqlite::params_from_iter(args), summary_row)?;
            Ok(rows.collect::<rusqlite::Result<_>>()?)
        })
    }
}

/// Reads a row shaped like [`QUEUE_SUMMARIES`] into a summary.
pub(crate) fn summary_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<MessageSummary> {
    let to: Option<String> = r.get(3)?;
    Ok(MessageSummary {
        id: r.get(0)?,
        location: r.get(1)?,
        from: r.get(2)?,
        to: to
            .unwrap_or_default()
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_string)
            .collect(),
        subject: r.get(4)?,
        date: r.get(5)?,
        size: r.get::<_, i64>(6)? as u64,
        state: r.get(7)?,
        sha256: r.get(8)?,
        uid: r.get(9)?,
        message: r.get(10)?,
        attempts: r.get(11)?,
        next_attempt: r.get(12)?,
        last_error: r.get(13)?,
        origin: r.get(14)?,
        reason: r.get(15)?,
        verdict: r.get(16)?,
    })
}

/// A message ready to be inserted: metadata extracted outside the writer thread.
pub(crate) struct Prepared {
    incoming: Incoming,
    meta: MessageMetadata,
    digests: Digests,
    size: u64,
    /// When it arrived, if not now (imported mail keeps its date).
    received: Option<i64>,
    /// Where its bytes were written (`EmbeddedStore::write_blob`).
    location: Option<BlobLocation>,
}

impl Prepared {
    pub(crate) fn new(incoming: Incoming) -> Result<Prepared> {
        let id = &incoming.id;
        // Ids are lower-case hex: the first two digits name the blob's shard directory.
        if id.len() < 2 || !id.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
            return Err(StoreError::Invalid(format!("bad message id {id:?}")));
        }
        Ok(Prepared {
            meta: MessageMetadata::extract(&incoming.data),
            digests: Digests::of(&incoming.data),
            size: incoming.data.len() as u64,
            received: None,
            location: None,
            incoming,
        })
    }

    /// Inserts the message, its parts and a queue item in `inbound` for its recipients.
    /// The blob must already be durable.
    pub(crate) fn insert(&self, c: &Connection) -> Result<()> {
        let message = self.insert_message(c)?;
        let received = now();
        c.prepare_cached(
            "INSERT INTO queue_items(message, queue, state, next_attempt, created)
             VALUES(?1, ?2, 'ready', ?3, ?3)",
        )?
        .execute(params![message, QUEUE_INBOUND, received])?;
        let item = c.last_insert_rowid();
        let mut rcpt_stmt =
            c.prepare_cached("INSERT OR IGNORE INTO queue_rcpts(item, address) VALUES(?1, ?2)")?;
        for r in &self.incoming.rcpt_to {
            rcpt_stmt.execute(params![item, r.to_ascii_lowercase()])?;
        }
        Ok(())
    }

    /// Inserts the message row and its parts; returns the row id.
    pub(crate) fn insert_message(&self, c: &Connection) -> Result<i64> {
        let (incoming, meta) = (&self.incoming, &self.meta);
        let received = self.received.unwrap_or_else(now);
        // The id is one above any ever used (see `unreferenced`): never reused, so the
        // text index's watermark is exact.
        c.prepare_cached(
            "INSERT INTO messages(id, uid, sha256, size, received, env_from, helo, peer,
               hdr_from, hdr_to, hdr_cc, subject, date, message_id,
               scan_version, scan_content, verdict, md5, blob_pack, blob_offset)
             VALUES(max(COALESCE((SELECT max(id) FROM messages), 0),
                        COALESCE((SELECT CAST(value AS INTEGER) FROM settings
                                  WHERE key='message_id_floor'), 0)) + 1,
                    ?1,?2,?3,?4,?5,?6,?7,?8,?9,?10,?11,?12,?13,?14,?15,?16,?17,?18,?19)",
        )?
        .execute(params![
            incoming.id,
            self.digests.sha256,
            self.size as i64,
            received,
            incoming.mail_from,
            incoming.helo,
            incoming.peer,
            meta.from,
            meta.to,
            meta.cc,
            meta.subject,
            meta.date,
            meta.message_id,
            incoming.scan.as_ref().map(|x| &x.version),
            incoming.scan.as_ref().map(|x| &x.content_version),
            incoming.scan.as_ref().and_then(|x| x.verdict.as_ref()),
            self.digests.md5,
            self.location.map(|l| l.pack),
            self.location.map(|l| l.offset as i64)
        ])?;
        let message = c.last_insert_rowid();
        count_pack_bytes(c, self.location, self.size as i64)?;
        insert_parts(c, message, meta)?;
        Ok(message)
    }
}

/// The message's parts (and archive members) for the index.
fn insert_parts(c: &Connection, message: i64, meta: &MessageMetadata) -> Result<()> {
    let mut part_stmt = c.prepare_cached(
        "INSERT INTO parts(message, part, content_type, filename, size, sha256, inside, md5)
         VALUES(?1,?2,?3,?4,?5,?6,?7,?8)",
    )?;
    for (n, p) in meta.parts.iter().enumerate() {
        part_stmt.execute(params![
            message,
            n as i64,
            p.content_type,
            p.filename,
            p.size as i64,
            p.sha256,
            p.inside.map(|i| i as i64),
            p.md5
        ])?;
    }
    Ok(())
}

/// (message, created, attempts) of a queue item read as due, unless an admin froze or
/// moved it since (the read and the write are separate transactions).
fn still_due(c: &Connection, item: i64, queue: &str) -> Result<Option<(i64, i64, i64)>> {
    Ok(c.prepare_cached(
        "SELECT message, created, attempts FROM queue_items
         WHERE id=?1 AND queue=?2 AND state!='frozen'",
    )?
    .query_row(params![item, queue], |r| {
        Ok((r.get(0)?, r.get(1)?, r.get(2)?))
    })
    .optional()?)
}

/// The blob reference in columns `uid, blob_pack, blob_offset, size` of a row, from
/// column `first` on.
pub(super) fn blob_ref_of(r: &rusqlite::Row<'_>, first: usize) -> rusqlite::Result<BlobRef> {
    let pack: Option<u32> = r.get(first + 1)?;
    let offset: Option<i64> = r.get(first + 2)?;
    Ok(BlobRef {
        uid: r.get(first)?,
        at: pack.zip(offset).map(|(pack, offset)| BlobLocation {
            pack,
            offset: offset as u64,
        }),
        len: r.get::<_, i64>(first + 3)? as u64,
    })
}

/// Keeps `packs.live` (bytes still referenced per pack) current: `size` is added
/// (negative: removed) with its record header.
fn count_pack_bytes(c: &Connection, at: Option<BlobLocation>, size: i64) -> Result<()> {
    if let Some(at) = at {
        let bytes = size + size.signum() * blobs::HEADER as i64;
        c.prepare_cached(
            "INSERT INTO packs(id, live) VALUES(?1, ?2)
             ON CONFLICT(id) DO UPDATE SET live=live+excluded.live",
        )?
        .execute(params![at.pack, bytes])?;
    }
    Ok(())
}

/// Deletes those of `candidates` (message row ids) that nothing points at any more and
/// returns their blob ids, to be removed once the transaction has committed.
fn unreferenced(c: &Connection, candidates: &[i64]) -> Result<Vec<String>> {
    let mut blobs = Vec::new();
    let mut gone = Vec::new();
    for id in candidates {
        let row: Option<(String, Option<u32>, Option<i64>, i64)> = c
            .prepare_cached(
                "SELECT uid, blob_pack, blob_offset, size FROM messages m WHERE id=?1
                   AND NOT EXISTS (SELECT 1 FROM queue_items q WHERE q.message=m.id)
                   AND NOT EXISTS (SELECT 1 FROM mailbox_entries e WHERE e.message=m.id)
                   AND NOT EXISTS (SELECT 1 FROM quarantine z WHERE z.message=m.id)",
            )?
            .query_row([id], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))
            .optional()?;
        if let Some((uid, pack, offset, size)) = row {
            c.prepare_cached("DELETE FROM messages WHERE id=?1")?
                .execute([id])?;
            c.prepare_cached("DELETE FROM imap_cache WHERE uid=?1")?
                .execute([&uid])?;
            match pack.zip(offset) {
                Some((pack, offset)) => {
                    let at = BlobLocation {
                        pack,
                        offset: offset as u64,
                    };
                    count_pack_bytes(c, Some(at), -size)?;
                }
                None => blobs.push(uid),
            }
            gone.push(*id);
        }
    }
    if let Some(&highest) = gone.iter().max() {
        // Ids are never given out twice, even the highest one just freed.
        c.prepare_cached(
            "INSERT INTO settings(key, value) VALUES('message_id_floor', ?1)
             ON CONFLICT(key) DO UPDATE SET
               value=max(CAST(value AS INTEGER), CAST(excluded.value AS INTEGER))",
        )?
        .execute([highest])?;
        let mut forget =
            c.prepare_cached("INSERT OR IGNORE INTO text_deleted(message) VALUES(?1)")?;
        for id in &gone {
            forget.execute([id])?;
        }
    }
    Ok(blobs)
}

const MAILBOX_SUMMARIES: &str = "SELECT 'm' || e.id, 'mailbox:' || b.user || '/' || b.name, m.hdr_from,
        m.hdr_to, m.subject, COALESCE(m.date, m.received), m.size, 'delivered', m.sha256, e.uid, m.uid,
        NULL, NULL, NULL, NULL, NULL, m.verdict
    FROM mailbox_entries e JOIN mailboxes b ON b.id=e.mailbox JOIN messages m ON m.id=e.message
    WHERE b.user=?1 AND b.name=?2 ORDER BY e.uid";

const QUEUE_SUMMARIES: &str = "SELECT 'q' || q.id, 'queue:' || q.queue, m.env_from,
        (SELECT group_concat(address, ',') FROM queue_rcpts r WHERE r.item=q.id),
        m.subject, COALESCE(m.date, m.received), m.size, q.state, m.sha256, NULL, m.uid,
        q.attempts, q.next_attempt, q.last_error, NULL, NULL, m.verdict
    FROM queue_items q JOIN messages m ON m.id=q.message WHERE q.queue=?1 ORDER BY q.id";

impl Store for EmbeddedStore {
    fn close(&self) {
        self.text.close();
    }

    fn ingest(&self, incoming: Incoming) -> Result<Accepted> {
        let mut prepared = Prepared::new(incoming)?;
        let accepted = Accepted {
            id: prepared.incoming.id.clone(),
            size: prepared.size,
        };
        self.write_blob(&mut prepared)?;
        let id = accepted.id.clone();
        self.text
            .remember(&id, std::mem::take(&mut prepared.meta.text));
        // A failed commit leaves the appended bytes unreferenced: compaction takes them.
        let result = self.writer.write(move |c| prepared.insert(c));
        if result.is_err() {
            self.text.forget(&id);
        } else {
            self.text.wake();
        }
        result.map(|()| accepted)
    }

    fn recipient_status(&self, address: &str) -> Result<RecipientStatus> {
        let Some((address, domain)) = normalize_address(address) else {
            return Ok(RecipientStatus::NotLocal);
        };
        self.read(move |c| {
            let local: bool = c
                .prepare_cached("SELECT 1 FROM domains WHERE name=?1")?
                .exists([&domain])?;
            if !local {
                return Ok(RecipientStatus::NotLocal);
            }
            let user: bool = c
                .prepare_cached("SELECT 1 FROM users WHERE address=?1")?
                .exists([&address])?;
            Ok(if user {
                RecipientStatus::LocalUser
            } else {
                RecipientStatus::UnknownLocalUser
            })
        })
    }

    fn domain_add(&self, name: &str) -> Result<()> {
        let name = name.trim().to_ascii_lowercase();
        if !valid_domain(&name) {
            return Err(StoreError::Invalid(format!(
                "{name:?} is not a domain name (letters, digits, hyphens and dots)"
            )));
        }
        self.write(move |c| {
            let n = c.execute(
                "INSERT OR IGNORE INTO domains(name, created) VALUES(?1, ?2)",
                params![name, now()],
            )?;
            if n == 0 {
                return Err(StoreError::Exists(format!("domain {name} already exists")));
            }
            Ok(())
        })
    }

    fn domain_list(&self) -> Result<Vec<DomainInfo>> {
        self.read(|c| {
            let mut stmt = c.prepare(
                "SELECT d.name, (SELECT COUNT(*) FROM users u WHERE u.domain=d.name)
                 FROM domains d ORDER BY d.name",
            )?;
            let rows = stmt.query_map([], |r| {
                Ok(DomainInfo {
                    name: r.get(0)?,
                    users: r.get::<_, i64>(1)? as u64,
                })
            })?;
            Ok(rows.collect::<rusqlite::Result<_>>()?)
        })
    }

    fn domain_remove(&self, name: &str) -> Result<()> {
        let name = name.trim().to_ascii_lowercase();
        self.write(move |c| {
            let users: i64 =
                c.query_row("SELECT COUNT(*) FROM users WHERE domain=?1", [&name], |r| {
                    r.get(0)
                })?;
            if users > 0 {
                return Err(StoreError::Invalid(format!(
                    "domain {name} still has {users} user(s); remove them first"
                )));
            }
            if c.execute("DELETE FROM domains WHERE name=?1", [&name])? == 0 {
                return Err(StoreError::NotFound(format!("no local domain {name}")));
            }
            Ok(())
        })
    }

    fn user_add(&self, address: &str, password: &str) -> Result<()> {
        let Some((address, domain)) = normalize_address(address) else {
            return Err(StoreError::Invalid(format!(
                "{address:?} is not an address of the form user@domain"
            )));
        };
        if password.is_empty() {
            return Err(StoreError::Invalid("the password is empty".into()));
        }
        let hash = password::hash(password);
        self.write(move |c| {
            if !c.prepare_cached("SELECT 1 FROM domains WHERE name=?1")?.exists([&domain])? {
                return Err(StoreError::NotFound(format!(
                    "{domain} is not a local domain; add it first with `lazaret domain add {domain}`"
                )));
            }
            let n = c.execute(
                "INSERT OR IGNORE INTO users(address, domain, password, created) VALUES(?1,?2,?3,?4)",
                params![address, domain, hash, now()],
            )?;
            if n == 0 {
                return Err(StoreError::Exists(format!("user {address} already exists")));
            }
            for (name, special) in schema::DEFAULT_FOLDERS {
                c.execute(
                    "INSERT INTO mailboxes(user, name, uidvalidity, special) VALUES(?1,?2,?3,?4)",
                    params![address, name, (now() as u32).max(1), special],
                )?;
            }
            Ok(())
        })
    }

    fn user_list(&self) -> Result<Vec<UserInfo>> {
        self.read(|c| {
            let mut stmt = c.prepare(
                "SELECT u.address, COUNT(e.id), COALESCE(SUM(m.size), 0) FROM users u
                 LEFT JOIN mailboxes b ON b.user=u.address
                 LEFT JOIN mailbox_entries e ON e.mailbox=b.id
                 LEFT JOIN messages m ON m.id=e.message
                 GROUP BY u.address ORDER BY u.address",
            )?;
            let rows = stmt.query_map([], |r| {
                Ok(UserInfo {
                    address: r.get(0)?,
                    messages: r.get::<_, i64>(1)? as u64,
                    bytes: r.get::<_, i64>(2)? as u64,
                })
            })?;
            Ok(rows.collect::<rusqlite::Result<_>>()?)
        })
    }

    fn user_remove(&self, address: &str, delete_mail: bool) -> Result<u64> {
        let address = address.trim().to_ascii_lowercase();
        let removed = self.write(move |c| {
            if !c.prepare_cached("SELECT 1 FROM users WHERE address=?1")?.exists([&address])? {
                return Err(StoreError::NotFound(format!("no user {address}")));
            }
            let count: i64 = c.query_row(
                "SELECT COUNT(*) FROM mailbox_entries e JOIN mailboxes b ON b.id=e.mailbox
                 WHERE b.user=?1",
                [&address],
                |r| r.get(0),
            )?;
            if count > 0 && !delete_mail {
                return Err(StoreError::Invalid(format!(
                    "user {address} has {count} message(s); pass --delete-mail to delete them with the account"
                )));
            }
            let messages: Vec<i64> = c
                .prepare(
                    "SELECT DISTINCT e.message FROM mailbox_entries e
                     JOIN mailboxes b ON b.id=e.mailbox WHERE b.user=?1",
                )?
                .query_map([&address], |r| r.get(0))?
                .collect::<rusqlite::Result<_>>()?;
            c.execute(
                "DELETE FROM mailbox_entries WHERE mailbox IN (SELECT id FROM mailboxes WHERE user=?1)",
                [&address],
            )?;
            c.execute("DELETE FROM mailboxes WHERE user=?1", [&address])?;
            c.execute("DELETE FROM users WHERE address=?1", [&address])?;
            Ok((count as u64, unreferenced(c, &messages)?))
        })?;
        for blob in removed.1 {
            self.discard_blob(&blob);
        }
        Ok(removed.0)
    }

    fn user_set_password(&self, address: &str, password: &str) -> Result<()> {
        if password.is_empty() {
            return Err(StoreError::Invalid("the password is empty".into()));
        }
        let address = address.trim().to_ascii_lowercase();
        let hash = password::hash(password);
        self.write(move |c| {
            if c.execute(
                "UPDATE users SET password=?1 WHERE address=?2",
                params![hash, address],
            )? == 0
            {
                return Err(StoreError::NotFound(format!("no user {address}")));
            }
            Ok(())
        })
    }

    fn user_verify_password(&self, address: &str, password: &str) -> Result<bool> {
        let address = address.trim().to_ascii_lowercase();
        let hash: Option<String> = self.read(move |c| {
            Ok(
                c.prepare_cached("SELECT password FROM users WHERE address=?1")?
                    .query_row([address], |r| r.get(0))
                    .optional()?,
            )
        })?;
        Ok(hash.is_some_and(|h| password::verify(password, &h)))
    }

    fn queue_list(&self) -> Result<Vec<QueueSummary>> {
        self.read(|c| {
            let mut queues: BTreeMap<String, QueueSummary> = BTreeMap::new();
            let empty = |name: &str| QueueSummary {
                name: name.to_string(),
                state: "active".into(),
                messages: 0,
                ready: 0,
                retry: 0,
                frozen: 0,
                oldest: None,
                next_attempt: None,
                held: None,
            };
            for name in SYSTEM_QUEUES {
                queues.insert(name.into(), empty(name));
            }
            let mut stmt = c.prepare(
                "SELECT queue, COUNT(*), SUM(state='ready'), SUM(state='retry'), SUM(state='frozen'),
                        MIN(created), MIN(CASE WHEN state!='frozen' THEN next_attempt END)
                 FROM queue_items GROUP BY queue",
            )?;
            let mut rows = stmt.query([])?;
            while let Some(r) = rows.next()? {
                let name: String = r.get(0)?;
                let q = queues.entry(name.clone()).or_insert_with(|| empty(&name));
                q.messages = r.get::<_, i64>(1)? as u64;
                q.ready = r.get::<_, i64>(2)? as u64;
                q.retry = r.get::<_, i64>(3)? as u64;
                q.frozen = r.get::<_, i64>(4)? as u64;
                q.oldest = r.get(5)?;
                q.next_attempt = r.get(6)?;
            }
            let mut stmt = c.prepare("SELECT name, state FROM queues")?;
            let mut rows = stmt.query([])?;
            while let Some(r) = rows.next()? {
                let name: String = r.get(0)?;
                queues.entry(name.clone()).or_insert_with(|| empty(&name)).state = r.get(1)?;
            }
            if outbound::outbound_disabled(c)? {
                for q in queues.values_mut() {
                    if !SYSTEM_QUEUES.contains(&q.name.as_str()) {
                        q.held = Some("outbound disabled".into());
                    }
                }
            }
            Ok(queues.into_values().collect())
        })
    }

    fn queue_set_state(&self, name: &str, state: QueueState) -> Result<()> {
        let name = name.to_string();
        self.write(move |c| {
            let known = SYSTEM_QUEUES.contains(&name.as_str())
                || name.starts_with("remote:")
                || name.starts_with("smarthost:")
                || c.prepare_cached("SELECT 1 FROM queue_items WHERE queue=?1")?.exists([&name])?
                || c.prepare_cached("SELECT 1 FROM queues WHERE name=?1")?.exists([&name])?;
            if !known {
                return Err(StoreError::NotFound(format!(
                    "no queue {name} (see `lazaret queue list`; remote queues are named remote:DOMAIN or smarthost:CONNECTOR)"
                )));
            }
            match state {
                QueueState::Active => c.execute("DELETE FROM queues WHERE name=?1", [&name])?,
                QueueState::Frozen => c.execute(
                    "INSERT OR REPLACE INTO queues(name, state) VALUES(?1, 'frozen')",
                    [&name],
                )?,
            };
            Ok(())
        })
    }

    fn route_inbound(
        &self,
        limit: usize,
        require_scan: bool,
        next_hop: &dyn Fn(&str) -> String,
    ) -> Result<usize> {
        let due = self.due_items_where(QUEUE_INBOUND, limit, require_scan)?;
        if due.is_empty() {
            return Ok(0);
        }
        let plans: Vec<(i64, BTreeMap<String, Vec<String>>)> = due
            .into_iter()
            .map(|(item, rcpts)| {
                let mut groups: BTreeMap<String, Vec<String>> = BTreeMap::new();
                for r in rcpts {
                    groups.entry(next_hop(&r)).or_default().push(r);
                }
                (item, groups)
            })
            .collect();
        self.write(move |c| {
            let mut moved = 0;
            for (item, groups) in plans {
                let Some((message, created, _)) = still_due(c, item, QUEUE_INBOUND)? else {
                    continue;
                };
                for (queue, rcpts) in groups {
                    c.prepare_cached(
                        "INSERT INTO queue_items(message, queue, state, next_attempt, created)
                         VALUES(?1, ?2, 'ready', ?3, ?4)",
                    )?
                    .execute(params![message, queue, now(), created])?;
                    let new_item = c.last_insert_rowid();
                    for r in rcpts {
                        c.prepare_cached("INSERT INTO queue_rcpts(item, address) VALUES(?1, ?2)")?
                            .execute(params![new_item, r])?;
                    }
                }
                c.prepare_cached("DELETE FROM queue_items WHERE id=?1")?
                    .execute([item])?;
                moved += 1;
            }
            Ok(moved)
        })
    }

    fn deliver_local(&self, limit: usize, retry_delay_secs: i64) -> Result<DeliveryReport> {
        let due = self.due_items(QUEUE_LOCAL, limit)?;
        if due.is_empty() {
            return Ok(DeliveryReport::default());
        }
        self.write(move |c| {
            let mut report = DeliveryReport::default();
            let t = now();
            for (item, rcpts) in due {
                let Some((message, _, attempts)) = still_due(c, item, QUEUE_LOCAL)? else {
                    continue;
                };
                let mut missing = Vec::new();
                for rcpt in &rcpts {
                    let inbox: Option<(i64, i64)> = c
                        .prepare_cached(
                            "UPDATE mailboxes SET uidnext=uidnext+1 WHERE user=?1 AND name='INBOX'
                             RETURNING id, uidnext-1",
                        )?
                        .query_row([rcpt], |r| Ok((r.get(0)?, r.get(1)?)))
                        .optional()?;
                    match inbox {
                        Some((mailbox, uid)) => {
                            c.prepare_cached(
                                "INSERT INTO mailbox_entries(mailbox, uid, message, internal_date)
                                 VALUES(?1, ?2, ?3, ?4)",
                            )?
                            .execute(params![mailbox, uid, message, t])?;
                            c.prepare_cached(
                                "DELETE FROM queue_rcpts WHERE item=?1 AND address=?2",
                            )?
                            .execute(params![item, rcpt])?;
                        }
                        None => missing.push(rcpt.clone()),
                    }
                }
                for rcpt in &rcpts {
                    if !missing.contains(rcpt) && !report.users.contains(rcpt) {
                        report.users.push(rcpt.clone());
                    }
                }
                if missing.is_empty() {
                    c.prepare_cached("DELETE FROM queue_items WHERE id=?1")?
                        .execute([item])?;
                    report.delivered += 1;
                } else {
                    // The user vanished after RCPT was accepted. Hold the message for the
                    // admin rather than lose it; retry in case the account comes back.
                    c.prepare_cached(
                        "UPDATE queue_items SET state='retry', attempts=?2, next_attempt=?3,
                           last_error=?4 WHERE id=?1",
                    )?
                    .execute(params![
                        item,
                        attempts + 1,
                        t + retry_delay_secs,
                        format!("no such local user: {}", missing.join(", "))
                    ])?;
                    report.deferred += 1;
                }
            }
            Ok(report)
        })
    }

    fn next_due(&self, queues: &[&str]) -> Result<Option<i64>> {
        let queues: Vec<String> = queues.iter().map(|q| q.to_string()).collect();
        self.read(move |c| {
            let mut earliest: Option<i64> = None;
            let mut stmt = c.prepare_cached(
                "SELECT MIN(next_attempt) FROM queue_items WHERE queue=?1 AND state IN ('ready','retry')
                   AND NOT EXISTS (SELECT 1 FROM queues WHERE name=?1 AND state='frozen')",
            )?;
            for q in &queues {
                let t: Option<i64> = stmt.query_row([q], |r| r.get(0))?;
                earliest = match (earliest, t) {
                    (Some(a), Some(b)) => Some(a.min(b)),
                    (a, b) => a.or(b),
                };
            }
            Ok(earliest)
        })
    }

    fn outbound_queues(&self) -> Result<Vec<(String, i64)>> {
        self.outbound_queues_impl()
    }

    fn outbound_due(&self, queue: &str, limit: usize, busy: &[i64]) -> Result<Vec<QueuedMessage>> {
        self.outbound_due_impl(queue, limit, busy)
    }

    fn record_attempts(&self, outcomes: Vec<AttemptOutcome>) -> Result<()> {
        self.record_attempts_impl(outcomes)
    }

    fn record_worker_failure(&self, items: Vec<i64>, error: String) -> Result<u64> {
        self.record_worker_failure_impl(items, error)
    }

    fn items_set_frozen(&self, ids: &[String], frozen: bool) -> Result<u64> {
        self.items_set_frozen_impl(ids, frozen)
    }

    fn set_outbound_disabled(&self, disabled: bool) -> Result<()> {
        self.set_setting(OUTBOUND_DISABLED, if disabled { "1" } else { "0" })
    }

    fn outbound_disabled(&self) -> Result<bool> {
        self.read(outbound::outbound_disabled)
    }

    fn folders(&self, user: &str) -> Result<Vec<Folder>> {
        self.folders_impl(user)
    }
    fn folder_create(&self, user: &str, name: &str) -> Result<()> {
        self.folder_create_impl(user, name)
    }
    fn folder_delete(&self, user: &str, name: &str) -> Result<()> {
        self.folder_delete_impl(user, name)
    }
    fn folder_rename(&self, user: &str, from: &str, to: &str) -> Result<()> {
        self.folder_rename_impl(user, from, to)
    }
    fn folder_subscribe(&self, user: &str, name: &str, on: bool) -> Result<()> {
        self.folder_subscribe_impl(user, name, on)
    }
    fn folder_snapshot(&self, user: &str, name: &str) -> Result<FolderSnapshot> {
        self.folder_snapshot_impl(user, name)
    }
    fn write_generation(&self) -> u64 {
        self.writer.generation()
    }
    fn set_flags(
        &self,
        user: &str,
        folder: &str,
        entries: Vec<i64>,
        change: FlagChange,
        flags: Vec<String>,
    ) -> Result<Vec<(i64, Vec<String>)>> {
        self.set_flags_impl(user, folder, entries, change, flags)
    }
    fn copy_entries(
        &self,
        user: &str,
        from: &str,
        to: &str,
        entries: Vec<i64>,
        remove: bool,
    ) -> Result<(i64, Vec<(i64, i64)>)> {
        self.copy_impl(user, from, to, entries, remove)
    }
    fn append(
        &self,
        user: &str,
        folder: &str,
        id: String,
        data: Vec<u8>,
        flags: Vec<String>,
        internal_date: Option<i64>,
    ) -> Result<(i64, i64)> {
        self.append_impl(user, folder, id, data, flags, internal_date)
    }

    fn mailbox_list(&self, user: &str) -> Result<Vec<MailboxInfo>> {
        let user = user.trim().to_ascii_lowercase();
        self.read(move |c| {
            if !c
                .prepare_cached("SELECT 1 FROM users WHERE address=?1")?
                .exists([&user])?
            {
                return Err(StoreError::NotFound(format!("no user {user}")));
            }
            let mut stmt = c.prepare(
                "SELECT b.name, b.uidvalidity, b.uidnext,
                        (SELECT COUNT(*) FROM mailbox_entries e WHERE e.mailbox=b.id)
                 FROM mailboxes b WHERE b.user=?1 ORDER BY b.id",
            )?;
            let rows = stmt.query_map([&user], |r| {
                Ok(MailboxInfo {
                    name: r.get(0)?,
                    uidvalidity: r.get(1)?,
                    uidnext: r.get(2)?,
                    messages: r.get::<_, i64>(3)? as u64,
                })
            })?;
            Ok(rows.collect::<rusqlite::Result<_>>()?)
        })
    }

    fn mailbox_messages(&self, user: &str, mailbox: &str) -> Result<Vec<MessageSummary>> {
        self.summaries(
            MAILBOX_SUMMARIES,
            vec![user.trim().to_ascii_lowercase(), mailbox.to_string()],
        )
    }

    fn queue_messages(&self, queue: &str) -> Result<Vec<MessageSummary>> {
        self.summaries(QUEUE_SUMMARIES, vec![queue.to_string()])
    }

    fn message_raw(&self, id: &str) -> Result<Vec<u8>> {
        let id = id.to_string();
        let uid: Option<String> = self.read(move |c| {
            let sql = if let Some(n) = id.strip_prefix('q') {
                ("SELECT m.uid FROM queue_items q JOIN messages m ON m.id=q.message WHERE q.id=?1", n.to_string())
            } else if let Some(n) = id.strip_prefix('m') {
                ("SELECT m.uid FROM mailbox_entries e JOIN messages m ON m.id=e.message WHERE e.id=?1", n.to_string())
            } else if let Some(n) = id.strip_prefix('x') {
                ("SELECT m.uid FROM quarantine z JOIN messages m ON m.id=z.message WHERE z.id=?1", n.to_string())
            } else {
                ("SELECT uid FROM messages WHERE uid=?1", id.clone())
            };
            Ok(c.prepare_cached(sql.0)?.query_row([sql.1], |r| r.get(0)).optional()?)
        })?;
        match uid {
            Some(uid) => self.with_blob(&uid, |b| self.blobs.read(b)),
            None => Err(StoreError::NotFound("no such message".into())),
        }
    }

    fn imap_cache_get(&self, messages: &[String]) -> Result<Vec<ImapCached>> {
        let messages = messages.to_vec();
        self.read(move |c| {
            let mut stmt =
                c.prepare_cached("SELECT envelope, bodystructure FROM imap_cache WHERE uid=?1")?;
            messages
                .iter()
                .map(|m| {
                    Ok(stmt
                        .query_row([m], |r| {
                            Ok(ImapCached {
                                envelope: r.get(0)?,
                                bodystructure: r.get(1)?,
                            })
                        })
                        .optional()?
                        .unwrap_or_default())
                })
                .collect()
        })
    }

    fn imap_cache_put(&self, entries: Vec<(String, ImapCached)>) -> Result<()> {
        self.write(move |c| {
            let mut stmt = c.prepare_cached(
                "INSERT INTO imap_cache(uid, envelope, bodystructure) VALUES(?1, ?2, ?3)
                 ON CONFLICT(uid) DO UPDATE SET
                   envelope=COALESCE(excluded.envelope, envelope),
                   bodystructure=COALESCE(excluded.bodystructure, bodystructure)",
            )?;
            for (uid, cached) in entries {
                // Only for messages that still exist.
                if c.prepare_cached("SELECT 1 FROM messages WHERE uid=?1")?
                    .exists([&uid])?
                {
                    stmt.execute(params![uid, cached.envelope, cached.bodystructure])?;
                }
            }
            Ok(())
        })
    }

    fn message_append_to(&self, message: &str, buf: &mut Vec<u8>) -> Result<usize> {
        let blob = self.blob_ref(message)?;
        match self.blobs.read_into(&blob, buf) {
            Err(StoreError::Io { .. }) if blob.at.is_some() => {
                self.blobs.read_into(&self.blob_ref(message)?, buf)
            }
            result => result,
        }
    }

    fn message_head(&self, message: &str) -> Result<Vec<u8>> {
        self.with_blob(message, |b| self.blobs.read_head(b))
    }

    fn mailbox_delete(&self, user: &str, mailbox: &str, ids: &[String]) -> Result<u64> {
        let entries: Vec<i64> = ids
            .iter()
            .filter_map(|id| id.strip_prefix('m')?.parse().ok())
            .collect();
        let (user, mailbox) = (
            user.trim().to_ascii_lowercase(),
            folders::canonical(mailbox),
        );
        let (deleted, blobs) = self.write(move |c| {
            let mut deleted = 0;
            let mut messages = Vec::new();
            for entry in entries {
                let message: Option<i64> = c
                    .prepare_cached(
                        "DELETE FROM mailbox_entries WHERE id=?1 AND mailbox=
                           (SELECT id FROM mailboxes WHERE user=?2 AND name=?3)
                         RETURNING message",
                    )?
                    .query_row(params![entry, user, mailbox], |r| r.get(0))
                    .optional()?;
                if let Some(m) = message {
                    deleted += 1;
                    messages.push(m);
                }
            }
            Ok((deleted, unreferenced(c, &messages)?))
        })?;
        for blob in blobs {
            self.discard_blob(&blob);
        }
        Ok(deleted)
    }

    fn find(
        &self,
        places: &[Place],
        filters: &Filters,
        sort: Option<SortKey>,
        limit: Option<usize>,
    ) -> Result<FindResult> {
        let (places, filters) = (places.to_vec(), filters.clone());
        self.read(move |c| find::find(c, &places, &filters, sort, limit))
    }

    fn find_ids(&self, places: &[Place], filters: &Filters) -> Result<Vec<String>> {
        let (places, filters) = (places.to_vec(), filters.clone());
        self.read(move |c| find::find_ids(c, &places, &filters))
    }

    fn scan_pending(&self, limit: usize) -> Result<Vec<PendingScan>> {
        self.read(move |c| scanning::pending(c, limit))
    }

    fn unscanned_inbound(&self) -> Result<u64> {
        self.read(scanning::unscanned_inbound)
    }

    fn rescan_candidates(
        &self,
        after: i64,
        limit: usize,
        content_version: &str,
        queues: bool,
        mailboxes: bool,
    ) -> Result<Vec<PendingScan>> {
        let version = content_version.to_string();
        self.read(move |c| {
            scanning::rescan_candidates(c, after, limit, &version, queues, mailboxes)
        })
    }

    fn hash_matches(
        &self,
        md5: Vec<(String, Option<u64>)>,
        sha256: Vec<(String, Option<u64>)>,
        queues: bool,
        mailboxes: bool,
    ) -> Result<Vec<(i64, String)>> {
        self.read(move |c| scanning::hash_matches(c, &md5, &sha256, queues, mailboxes))
    }

    fn messages_of_size(
        &self,
        sizes: Vec<u64>,
        queues: bool,
        mailboxes: bool,
    ) -> Result<Vec<PendingScan>> {
        self.read(move |c| scanning::messages_of_size(c, &sizes, queues, mailboxes))
    }

    fn record_scans(&self, records: Vec<ScanRecord>) -> Result<ActionReport> {
        let (report, old_blobs) = self.write(move |c| scanning::record(c, &records))?;
        for uid in old_blobs {
            self.discard_blob(&uid);
        }
        Ok(report)
    }

    fn blob_write(&self, uid: &str, data: &[u8]) -> Result<BlobLocation> {
        self.blobs.write(uid, data)
    }

    fn blob_read(&self, uid: &str) -> Result<Vec<u8>> {
        self.with_blob(uid, |b| self.blobs.read(b))
    }

    fn quarantine(&self, ids: &[String], actor: &str, reason: &str) -> Result<ActionReport> {
        let (ids, actor, reason) = (ids.to_vec(), actor.to_string(), reason.to_string());
        self.write(move |c| quarantine::quarantine(c, &ids, &actor, &reason))
    }

    fn quarantine_restore(&self, ids: &[String]) -> Result<ActionReport> {
        let ids = ids.to_vec();
        self.write(move |c| quarantine::restore(c, &ids))
    }

    fn quarantine_detail(&self, id: &str) -> Result<QuarantineDetail> {
        let id = id.to_string();
        let found = self.read(move |c| quarantine::detail(c, &id))?;
        let Some((mut detail, blob)) = found else {
            return Err(StoreError::NotFound(
                "no such quarantined message (ids look like x12; see `lazaret quarantine list`)"
                    .into(),
            ));
        };
        detail.headers =
            String::from_utf8_lossy(&self.with_blob(&blob, |b| self.blobs.read_head(b))?)
                .into_owned();
        Ok(detail)
    }

    fn remove(&self, ids: &[String], dsns: Vec<Incoming>) -> Result<ActionReport> {
        let mut prepared = dsns
            .into_iter()
            .map(Prepared::new)
            .collect::<Result<Vec<_>>>()?;
        for p in &mut prepared {
            self.write_blob(p)?;
        }
        let ids = ids.to_vec();
        let (report, gone) = self.write(move |c| quarantine::remove(c, &ids, &prepared))?;
        for blob in gone {
            self.discard_blob(&blob);
        }
        Ok(report)
    }

    fn import(&self, user: &str, folder: &str, messages: Vec<ImportMessage>) -> Result<u64> {
        self.import_impl(user, folder, messages)
    }

    fn message_count(&self) -> Result<u64> {
        EmbeddedStore::message_count(self)
    }

    fn reindex_batch(&self, after: i64, limit: usize) -> Result<ReindexBatch> {
        EmbeddedStore::reindex_batch(self, after, limit)
    }

    fn remove_orphan_blobs(&self) -> Result<u64> {
        EmbeddedStore::remove_orphan_blobs(self)
    }

    fn setting(&self, key: &str) -> Result<Option<String>> {
        let key = key.to_string();
        self.read(move |c| {
            Ok(c.prepare_cached("SELECT value FROM settings WHERE key=?1")?
                .query_row([key], |r| r.get(0))
                .optional()?)
        })
    }

    fn set_setting(&self, key: &str, value: &str) -> Result<()> {
        let (key, value) = (key.to_string(), value.to_string());
        self.write(move |c| {
            c.execute(
                "INSERT OR REPLACE INTO settings(key, value) VALUES(?1, ?2)",
                params![key, value],
            )?;
            Ok(())
        })
    }

    fn audit(&self, entry: AuditEntry) -> Result<()> {
        self.write(move |c| {
            c.execute(
                "INSERT INTO audit(at, actor, action, query, count, detail) VALUES(?1,?2,?3,?4,?5,?6)",
                params![
                    now(),
                    entry.actor,
                    entry.action,
                    entry.query,
                    entry.count.map(|n| n as i64),
                    entry.detail
                ],
            )?;
            Ok(())
        })
    }

    fn audit_since(&self, since: i64) -> Result<Vec<AuditRecord>> {
        self.read(move |c| {
            let mut stmt = c.prepare(
                "SELECT id, at, actor, action, query, count, detail FROM audit WHERE at>=?1 ORDER BY id",
            )?;
            let rows = stmt.query_map([since], |r| {
                Ok(AuditRecord {
                    id: r.get(0)?,
                    at: r.get(1)?,
                    entry: AuditEntry {
                        actor: r.get(2)?,
                        action: r.get(3)?,
                        query: r.get(4)?,
                        count: r.get::<_, Option<i64>>(5)?.map(|n| n as u64),
                        detail: r.get(6)?,
                    },
                })
            })?;
            Ok(rows.collect::<rusqlite::Result<_>>()?)
        })
    }

    fn stats(&self) -> Result<StoreStats> {
        let database_bytes = [&self.db_path, self.text.path()]
            .iter()
            .flat_map(|db| {
                ["", "-wal"].iter().filter_map(move |suffix| {
                    let mut p = db.as_os_str().to_owned();
                    p.push(suffix);
                    std::fs::metadata(p).ok().map(|m| m.len())
                })
            })
            .sum();
        self.read(move |c| {
            let text_index_behind = self.text.behind(c)?;
            let (messages, message_bytes): (i64, i64) = c.query_row(
                "SELECT COUNT(*), COALESCE(SUM(size), 0) FROM messages",
                [],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )?;
            let queued: i64 = c.query_row("SELECT COUNT(*) FROM queue_items", [], |r| r.get(0))?;
            let in_mailboxes: i64 =
                c.query_row("SELECT COUNT(*) FROM mailbox_entries", [], |r| r.get(0))?;
            let (quarantined, quarantine_bytes): (i64, i64) = c.query_row(
                "SELECT COUNT(*), COALESCE(SUM(m.size), 0) FROM quarantine z
                 JOIN messages m ON m.id=z.message",
                [],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )?;
            Ok(StoreStats {
                quarantined: quarantined as u64,
                quarantine_bytes: quarantine_bytes as u64,
                messages: messages as u64,
                message_bytes: message_bytes as u64,
                queued: queued as u64,
                in_mailboxes: in_mailboxes as u64,
                database_bytes,
                text_index_behind,
            })
        })
    }
}

#[cfg(test)]
#[path = "tests.rs"]
mod tests;
