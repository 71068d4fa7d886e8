//! Messages as stored: reading their bytes (by store id, wherever the row says they
//! are), summaries for listings, the IMAP cache, deletion by the user, and collecting
//! rows (and legacy blob files) that nothing points at any more.

use super::*;

/// Reads a row shaped like [`QUEUE_SUMMARIES`] into a summary.
pub(crate) fn summary_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<MessageSummary> {
    Ok(MessageSummary {
        id: r.get(0)?,
        location: r.get(1)?,
        from: r.get(2)?,
        to: address_list(r.get::<_, Option<String>>(3)?.as_deref()),
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

/// A comma-separated address list as stored (queue recipients, header To:).
pub(crate) fn address_list(text: Option<&str>) -> Vec<String> {
    text.unwrap_or_default()
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect()
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
pub(super) fn count_pack_bytes(c: &Connection, at: Option<BlobLocation>, size: i64) -> Result<()> {
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

/// Hands `candidates` (message row ids whose queue item, folder entry or quarantine
/// row was just deleted) that nothing points at any more to the background reclaim.
///
/// Removing a message row is the dear part of every deletion: at a million messages
/// its row, parts, fingerprint and lookup keys are one random page each in large
/// trees (~7 dirty pages per message, written to the log and again by the
/// checkpoint), so a purge of 50,000 worms ran slower than `postsuper -d` unlinking
/// files. The action now only deletes the row that placed the message and notes it
/// here (a small table, appended to); [`reclaim_batch`] removes the rest later, in id
/// order, while the writer is otherwise idle — Dovecot's expunge/purge split. Nothing
/// shows a message once no place holds it, so the wait is invisible but for `status`.
pub(super) fn release(c: &Connection, candidates: &[i64]) -> Result<()> {
    let mut unheld = c.prepare_cached(
        "SELECT NOT EXISTS (SELECT 1 FROM queue_items q WHERE q.message=?1)
            AND NOT EXISTS (SELECT 1 FROM mailbox_entries e WHERE e.message=?1)
            AND NOT EXISTS (SELECT 1 FROM quarantine z WHERE z.message=?1)",
    )?;
    let mut note = c.prepare_cached("INSERT OR IGNORE INTO reclaim(message) VALUES(?1)")?;
    for id in candidates {
        if unheld.query_row([id], |r| r.get::<_, bool>(0))? {
            note.execute([id])?;
        }
    }
    Ok(())
}

/// Reclaims up to `limit` released messages, lowest ids first (neighbours share
/// pages, so a batch dirties fewer of them). Returns how many left the list and the
/// legacy blob files to delete once committed. A message placed again since its
/// release (an IMAP COPY from a stale view) only leaves the list.
pub(super) fn reclaim_batch(c: &Connection, limit: usize) -> Result<(usize, Vec<String>)> {
    let mut ids: Vec<i64> = c
        .prepare_cached("DELETE FROM reclaim WHERE message IN (SELECT message FROM reclaim ORDER BY message LIMIT ?1) RETURNING message")?
        .query_map([limit as i64], |r| r.get(0))?
        .collect::<rusqlite::Result<_>>()?;
    // RETURNING gives no order.
    ids.sort_unstable();
    let blobs = unreferenced(c, &ids)?;
    Ok((ids.len(), blobs))
}

/// How many released messages wait for [`reclaim_batch`].
pub(super) fn reclaim_backlog(c: &Connection) -> Result<u64> {
    Ok(c.prepare_cached("SELECT COUNT(*) FROM reclaim")?
        .query_row([], |r| r.get::<_, i64>(0))? as u64)
}

/// A message row nothing points at: uid, pack, offset, size, subject.
type Unreferenced = (String, Option<u32>, Option<i64>, i64, String);

/// Deletes those of `candidates` (message row ids) that nothing points at any more and
/// returns their blob ids, to be removed once the transaction has committed.
pub(super) fn unreferenced(c: &Connection, candidates: &[i64]) -> Result<Vec<String>> {
    let mut blobs = Vec::new();
    let mut gone = Vec::new();
    let mut last_words = Vec::new();
    for id in candidates {
        let row: Option<Unreferenced> = c
            .prepare_cached(
                "SELECT uid, blob_pack, blob_offset, size, subject FROM messages m WHERE id=?1
                   AND NOT EXISTS (SELECT 1 FROM queue_items q WHERE q.message=m.id)
                   AND NOT EXISTS (SELECT 1 FROM mailbox_entries e WHERE e.message=m.id)
                   AND NOT EXISTS (SELECT 1 FROM quarantine z WHERE z.message=m.id)",
            )?
            .query_row([id], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?))
            })
            .optional()?;
        if let Some((uid, pack, offset, size, subject)) = row {
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
                None => blobs.push(uid.clone()),
            }
            gone.push(*id);
            last_words.push((*id, uid, subject));
        }
    }
    let clusters: std::collections::HashMap<i64, i64> =
        super::clusters::forget(c, &gone)?.into_iter().collect();
    // The log keeps what `trace` and `exposure --cluster` need of a message no longer
    // stored: its store id, subject and outbreak cluster (written in later by the
    // clusterer for a message it had not filed yet).
    for (id, uid, subject) in last_words {
        let cluster = clusters.get(&id).map(|k| k.to_string()).unwrap_or_default();
        let subject: String = subject.chars().take(200).collect();
        let uid = super::events::StoreId::Keep(&uid);
        super::events::insert(c, id, super::events::GONE, &cluster, &subject, uid)?;
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

pub(super) const MAILBOX_SUMMARIES: &str = "SELECT 'm' || e.id, 'mailbox:' || b.user || '/' || b.name, m.hdr_from,
        m.hdr_to, m.subject, COALESCE(m.date, m.received), m.size, 'delivered', m.sha256, e.uid, m.uid,
        NULL, NULL, NULL, NULL, NULL, m.verdict
    FROM mailbox_entries e JOIN mailboxes b ON b.id=e.mailbox JOIN messages m ON m.id=e.message
    WHERE b.user=?1 AND b.name=?2 ORDER BY e.uid";

impl EmbeddedStore {
    pub(super) fn summaries(
        &self,
        sql: &'static str,
        args: Vec<String>,
    ) -> Result<Vec<MessageSummary>> {
        self.read(move |c| {
            let mut stmt = c.prepare_cached(sql)?;
            let rows = stmt.query_map(rusqlite::params_from_iter(args), summary_row)?;
            Ok(rows.collect::<rusqlite::Result<_>>()?)
        })
    }

    /// Where a message's bytes are, by its store id.
    pub(super) fn blob_ref(&self, uid: &str) -> Result<BlobRef> {
        if uid.len() < 2 || !uid.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(StoreError::NotFound("no such message".into()));
        }
        let key = uid.to_string();
        self.read(move |c| {
            // A message waiting for the reclaim is deleted as far as readers go.
            c.prepare_cached(
                "SELECT uid, blob_pack, blob_offset, size FROM messages m WHERE uid=?1
                   AND NOT EXISTS (SELECT 1 FROM reclaim r WHERE r.message=m.id)",
            )?
            .query_row([&key], |r| blob_ref_of(r, 0))
            .optional()?
            .ok_or_else(|| StoreError::NotFound("no such message".into()))
        })
    }

    /// Reads a message's bytes with `read`; if compaction moved them between the
    /// lookup and the read, looks again.
    pub(super) fn with_blob<R>(
        &self,
        uid: &str,
        read: impl Fn(&BlobRef) -> Result<R>,
    ) -> Result<R> {
        let blob = self.blob_ref(uid)?;
        match read(&blob) {
            Err(StoreError::Io { .. }) if blob.at.is_some() => read(&self.blob_ref(uid)?),
            result => result,
        }
    }

    /// Removes the objects, or the files in stores from before packs, of messages whose
    /// rows are gone (`unreferenced` names only those; bytes in packs go with
    /// compaction).
    pub(super) fn discard_blobs(&self, uids: Vec<String>) {
        if !uids.is_empty() {
            self.blobs.discard(uids);
        }
    }

    pub(super) fn mailbox_list_impl(&self, user: &str) -> Result<Vec<MailboxInfo>> {
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

    pub(super) fn mailbox_messages_impl(
        &self,
        user: &str,
        mailbox: &str,
    ) -> Result<Vec<MessageSummary>> {
        self.summaries(
            MAILBOX_SUMMARIES,
            vec![user.trim().to_ascii_lowercase(), mailbox.to_string()],
        )
    }

    pub(super) fn message_raw_impl(&self, id: &str) -> Result<Vec<u8>> {
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

    pub(super) fn imap_cache_get_impl(&self, messages: &[String]) -> Result<Vec<ImapCached>> {
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

    pub(super) fn imap_cache_put_impl(&self, entries: Vec<(String, ImapCached)>) -> Result<()> {
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

    pub(super) fn message_append_to_impl(&self, message: &str, buf: &mut Vec<u8>) -> Result<usize> {
        let blob = self.blob_ref(message)?;
        match self.blobs.read_into(&blob, buf) {
            Err(StoreError::Io { .. }) if blob.at.is_some() => {
                self.blobs.read_into(&self.blob_ref(message)?, buf)
            }
            result => result,
        }
    }

    pub(super) fn message_head_impl(&self, message: &str) -> Result<Vec<u8>> {
        self.with_blob(message, |b| self.blobs.read_head(b))
    }

    pub(super) fn mailbox_delete_impl(
        &self,
        user: &str,
        mailbox: &str,
        ids: &[String],
    ) -> Result<u64> {
        let entries: Vec<i64> = ids
            .iter()
            .filter_map(|id| id.strip_prefix('m')?.parse().ok())
            .collect();
        let (user, mailbox) = (
            user.trim().to_ascii_lowercase(),
            folders::canonical(mailbox),
        );
        let deleted = self.write(move |c| {
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
                    super::events::record(c, m, super::events::EXPUNGED, &user, &mailbox)?;
                    deleted += 1;
                    messages.push(m);
                }
            }
            if deleted > 0 {
                let folder = folders::folder_id(c, &user, &mailbox)?;
                folders::next_modseq(c, folder)?;
            }
            release(c, &messages)?;
            Ok(deleted)
        })?;
        Ok(deleted)
    }

    pub(super) fn blob_write_impl(&self, uid: &str, data: &[u8]) -> Result<Option<BlobLocation>> {
        self.blobs.put(uid, data)
    }

    pub(super) fn blob_read_impl(&self, uid: &str) -> Result<Vec<u8>> {
        self.with_blob(uid, |b| self.blobs.read(b))
    }

    pub(super) fn quarantine_detail_impl(&self, id: &str) -> Result<QuarantineDetail> {
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

    pub(super) fn remove_impl(&self, ids: &[String], dsns: Vec<Incoming>) -> Result<ActionReport> {
        let mut prepared = dsns
            .into_iter()
            .map(Prepared::new)
            .collect::<Result<Vec<_>>>()?;
        for p in &mut prepared {
            self.write_blob(p)?;
        }
        let ids = ids.to_vec();
        self.write(move |c| quarantine::remove(c, &ids, &prepared))
    }
}
