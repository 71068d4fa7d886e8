//! Ingest: a message is parsed once for the index (outside the writer thread), its
//! bytes appended to the packs and made durable, then its rows inserted (message, parts,
//! an `inbound` queue item with its recipients) in the next group commit.

use super::*;

/// A new message store id: 16 random hex digits (the blob's name, "queued as").
pub fn new_message_id() -> String {
    hex::encode(rand::random::<[u8; 8]>())
}

/// A message ready to be inserted: metadata extracted outside the writer thread.
pub(crate) struct Prepared {
    pub(super) incoming: Incoming,
    pub(super) meta: MessageMetadata,
    pub(super) digests: Digests,
    pub(super) size: u64,
    /// When it arrived, if not now (imported mail keeps its date).
    pub(super) received: Option<i64>,
    /// Where its bytes were written (`EmbeddedStore::write_blob`).
    pub(super) location: Option<BlobLocation>,
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
    /// Appends a prepared message's bytes to the packs, durably, and notes where.
    pub(super) fn write_blob(&self, p: &mut Prepared) -> Result<()> {
        p.location = Some(self.blobs.write(&p.incoming.id, &p.incoming.data)?);
        Ok(())
    }

    pub(super) fn ingest_impl(&self, incoming: Incoming) -> Result<Accepted> {
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
}
