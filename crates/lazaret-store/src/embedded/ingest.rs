//! Ingest: a message is parsed once for the index (outside the writer thread), its
//! bytes appended to the packs and made durable, then its rows inserted (message, parts,
//! an `inbound` queue item with its recipients) in the next group commit.

use super::clusters::{self, Fingerprint};
use super::*;

/// Who quarantines the mail `[auth_checks]` caught, in the audit and the message log.
pub const AUTH_CHECKS_ACTOR: &str = "auth-checks";

/// A new message store id: 16 random hex digits (the blob's name, "queued as").
pub fn new_message_id() -> String {
    hex::encode(rand::random::<[u8; 8]>())
}

/// A message ready to be inserted: metadata extracted outside the writer thread.
pub(crate) struct Prepared {
    pub(crate) incoming: Incoming,
    pub(crate) meta: MessageMetadata,
    pub(crate) digests: Digests,
    pub(crate) size: u64,
    /// When it arrived, if not now (imported mail keeps its date).
    pub(super) received: Option<i64>,
    /// Where its bytes were written (`EmbeddedStore::write_blob`).
    pub(super) location: Option<BlobLocation>,
    /// Its outbreak-cluster keys, taken from the same parse.
    pub(crate) fingerprint: Fingerprint,
}

/// A message a user's IMAP client uploads (APPEND), as the store takes it in.
pub(crate) fn appended(user: &str, id: String, data: Vec<u8>) -> Incoming {
    Incoming {
        id,
        mail_from: user.to_string(),
        rcpt_to: Vec::new(),
        helo: String::new(),
        peer: "imap".into(),
        data,
        scan: None,
        via: Via::Server("imap append"),
        auth: None,
    }
}

/// A message `lazaret import` brings into a folder, under a new store id.
pub(crate) fn imported(data: Vec<u8>) -> Incoming {
    Incoming {
        id: new_message_id(),
        mail_from: String::new(),
        rcpt_to: Vec::new(),
        helo: String::new(),
        peer: "import".into(),
        data,
        scan: None,
        via: Via::Server("import"),
        auth: None,
    }
}

impl Prepared {
    pub(crate) fn new(incoming: Incoming) -> Result<Prepared> {
        let id = &incoming.id;
        // Ids are lower-case hex: the first two digits name the blob's shard directory.
        if id.len() < 2 || !id.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
            return Err(StoreError::Invalid(format!("bad message id {id:?}")));
        }
        let meta = MessageMetadata::extract(&incoming.data);
        Ok(Prepared {
            fingerprint: Fingerprint::of(&meta),
            meta,
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
        c.prepare_cached(&format!(
            "INSERT INTO queue_items(id, message, queue, state, next_attempt, created)
             VALUES({}, ?1, ?2, 'ready', ?3, ?3)",
            super::schema::NEXT_ITEM_ID
        ))?
        .execute(params![message, QUEUE_INBOUND, received])?;
        let item = c.last_insert_rowid();
        let mut rcpt_stmt =
            c.prepare_cached("INSERT OR IGNORE INTO queue_rcpts(item, address) VALUES(?1, ?2)")?;
        for r in &self.incoming.rcpt_to {
            rcpt_stmt.execute(params![item, r.to_ascii_lowercase()])?;
        }
        // A forgery the authentication checks caught: quarantined in the commit that
        // stores it, so no recipient ever sees it (restore puts it back in `inbound`).
        if let Some(reason) = self
            .incoming
            .auth
            .as_ref()
            .and_then(|a| a.quarantine.as_deref())
        {
            super::quarantine::quarantine(c, &[format!("q{item}")], AUTH_CHECKS_ACTOR, reason)?;
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
               scan_version, scan_content, verdict, md5, blob_pack, blob_offset, auth)
             VALUES(max(COALESCE((SELECT max(id) FROM messages), 0),
                        COALESCE((SELECT CAST(value AS INTEGER) FROM settings
                                  WHERE key='message_id_floor'), 0)) + 1,
                    ?1,?2,?3,?4,?5,?6,?7,?8,?9,?10,?11,?12,?13,?14,?15,?16,?17,?18,?19,?20)",
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
            self.location.map(|l| l.offset as i64),
            incoming.auth.as_ref().map(|a| &a.results)
        ])?;
        let message = c.last_insert_rowid();
        super::events::accepted(c, message, incoming, meta)?;
        count_pack_bytes(c, self.location, self.size as i64)?;
        insert_parts(c, message, meta)?;
        clusters::record(c, message, &self.fingerprint)?;
        Ok(message)
    }
}

/// The message's parts (and archive members) for the index.
pub(super) fn insert_parts(c: &Connection, message: i64, meta: &MessageMetadata) -> Result<()> {
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

impl EmbeddedStore {
    /// Stores a prepared message's bytes (pack or object), durably, and notes where.
    pub(super) fn write_blob(&self, p: &mut Prepared) -> Result<()> {
        p.location = self.blobs.put(&p.incoming.id, &p.incoming.data)?;
        Ok(())
    }

    pub(super) fn ingest_impl(&self, incoming: Incoming) -> Result<Accepted> {
        let mut prepared = Prepared::new(incoming)?;
        let accepted = Accepted {
            id: prepared.incoming.id.clone(),
            size: prepared.size,
        };
        // The two flushes a `250` needs — the message's bytes and its rows — run at
        // the same time rather than one after the other: the rows are committed while
        // this thread waits for the pack's fdatasync, and the caller answers only once
        // both are done. A crash can thus leave a committed row whose bytes never
        // reached the disk, for a message nobody was told was accepted; opening the
        // store removes such rows (`verify_newest_pack`). A failed commit leaves the
        // appended bytes unreferenced: compaction takes them.
        //
        // An object, by contrast, is written whole before its rows commit: no
        // pipelining, nothing to verify at the next start, and a failed commit
        // discards it.
        let pending_sync = if self.blobs.in_objects() {
            self.write_blob(&mut prepared)?;
            None
        } else {
            let (at, end) = self
                .blobs
                .append(&prepared.incoming.id, &prepared.incoming.data)?;
            prepared.location = Some(at);
            Some((at.pack, end))
        };
        let id = accepted.id.clone();
        self.text
            .remember(&id, std::mem::take(&mut prepared.meta.text));
        let committed = self.writer.submit(move |c| prepared.insert(c));
        let result = match pending_sync {
            Some((pack, end)) => {
                let synced = self.blobs.sync_through(pack, end);
                committed.wait().and(synced)
            }
            None => committed.wait(),
        };
        if result.is_ok() {
            self.text.wake();
        } else {
            self.text.forget(&id);
            if pending_sync.is_none() {
                self.blobs.discard(vec![id]);
            }
        }
        result.map(|()| accepted)
    }
}

/// Removes the rows of messages whose bytes are not intact in the newest pack — the
/// only pack that can hold bytes not yet synced, since a pack is synced whole before
/// the next one is started. Such a message was committed while its bytes were still
/// being flushed when the machine went down, so it was never acknowledged (ingest
/// answers only once both are done). Checks each record's header and the SHA-256 the
/// row keeps of the bytes; returns how many messages were removed.
pub(super) fn verify_newest_pack(c: &Connection, blobs: &Blobs) -> Result<u64> {
    let Some(pack) = blobs.packs()?.into_iter().max() else {
        return Ok(0);
    };
    let rows: Vec<(i64, BlobRef, String)> = c
        .prepare(
            "SELECT id, uid, blob_pack, blob_offset, size, sha256 FROM messages
             WHERE blob_pack=?1 ORDER BY blob_offset",
        )?
        .query_map([pack], |r| Ok((r.get(0)?, blob_ref_of(r, 1)?, r.get(5)?)))?
        .collect::<rusqlite::Result<_>>()?;
    let torn: Vec<i64> = rows
        .into_iter()
        .filter(|(_, blob, sha256)| blobs.fault(blob, Some(sha256)).is_some())
        .map(|(id, ..)| id)
        .collect();
    if torn.is_empty() {
        return Ok(0);
    }
    c.execute_batch("BEGIN IMMEDIATE")?;
    let removed = (|| -> Result<()> {
        for id in &torn {
            c.execute(
                "DELETE FROM queue_rcpts WHERE item IN (SELECT id FROM queue_items WHERE message=?1)",
                [id],
            )?;
            for table in ["queue_items", "mailbox_entries", "quarantine"] {
                c.execute(&format!("DELETE FROM {table} WHERE message=?1"), [id])?;
            }
        }
        let mark = super::events::pending_mark();
        unreferenced(c, &torn)?;
        // Never acknowledged, so never there for anyone: no path to trace.
        super::events::pending_truncate(mark);
        for id in &torn {
            c.execute("DELETE FROM message_events WHERE message=?1", [id])?;
        }
        Ok(())
    })();
    match removed {
        Ok(()) => c.execute_batch("COMMIT")?,
        Err(e) => {
            let _ = c.execute_batch("ROLLBACK");
            return Err(e);
        }
    }
    tracing::warn!(
        "{} message(s) whose bytes did not reach the disk before the machine went down were removed; none of them had been acknowledged",
        torn.len()
    );
    Ok(torn.len() as u64)
}
