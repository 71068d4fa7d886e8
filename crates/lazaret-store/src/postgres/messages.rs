//! Messages as stored on the shared database: their bytes (objects in the bucket, by
//! store id or by the `q`/`m`/`x` id of what holds them), summaries for listings,
//! IMAP's cache of parsed structures, and deletion by the user.

use super::cached::Cached;
use super::folders::expunge;
use super::{pg, PostgresStore};
use crate::embedded::messages::address_list;
use crate::folder_rules::canonical;
use crate::model::{ImapCached, MailboxInfo, MessageSummary};
use crate::{Result, StoreError};

/// The header block is looked for in this much of a message at most (as the embedded
/// store's `read_head`).
const HEAD_LIMIT: u64 = 256 * 1024;

/// Columns every listing gives, in [`summary`]'s order.
const MAILBOX_SUMMARIES: &str = "SELECT 'm' || e.id, 'mailbox:' || b.\"user\" || '/' || b.name,
        m.hdr_from, m.hdr_to, m.subject, COALESCE(m.date, m.received), m.size, 'delivered',
        m.sha256, e.uid, m.uid, NULL::bigint, NULL::bigint, NULL::text, NULL::text,
        NULL::text, m.verdict
    FROM mailbox_entries e JOIN mailboxes b ON b.id=e.mailbox JOIN messages m ON m.id=e.message
    WHERE b.\"user\"=$1 AND b.name=$2 ORDER BY e.uid";

const QUEUE_SUMMARIES: &str = "SELECT 'q' || q.id, 'queue:' || q.queue, m.env_from,
        (SELECT string_agg(address, ',') FROM queue_rcpts r WHERE r.item=q.id),
        m.subject, COALESCE(m.date, m.received), m.size, q.state, m.sha256, NULL::bigint,
        m.uid, q.attempts::bigint, q.next_attempt, q.last_error, NULL::text, NULL::text,
        m.verdict
    FROM queue_items q JOIN messages m ON m.id=q.message WHERE q.queue=$1 ORDER BY q.id";

pub(super) fn summary(r: &tokio_postgres::Row) -> MessageSummary {
    MessageSummary {
        id: r.get(0),
        location: r.get(1),
        from: r.get(2),
        to: address_list(r.get(3)),
        subject: r.get(4),
        date: r.get(5),
        size: r.get::<_, i64>(6) as u64,
        state: r.get(7),
        sha256: r.get(8),
        uid: r.get(9),
        message: r.get(10),
        attempts: r.get(11),
        next_attempt: r.get(12),
        last_error: r.get(13),
        origin: r.get(14),
        reason: r.get(15),
        verdict: r.get(16),
    }
}

impl PostgresStore {
    fn summaries(&self, sql: &'static str, args: Vec<String>) -> Result<Vec<MessageSummary>> {
        self.with_client(move |c| async move {
            let params: Vec<&(dyn tokio_postgres::types::ToSql + Sync)> = args
                .iter()
                .map(|a| a as &(dyn tokio_postgres::types::ToSql + Sync))
                .collect();
            Ok(c.query(sql, &params)
                .await
                .map_err(pg)?
                .iter()
                .map(summary)
                .collect())
        })
    }

    pub fn mailbox_list(&self, user: &str) -> Result<Vec<MailboxInfo>> {
        let user = user.trim().to_ascii_lowercase();
        self.with_client(move |c| async move {
            if c.query_opt_cached("SELECT 1 FROM users WHERE address=$1", &[&user])
                .await?
                .is_none()
            {
                return Err(StoreError::NotFound(format!("no user {user}")));
            }
            Ok(c.query_cached(
                "SELECT b.name, b.uidvalidity, b.uidnext,
                        (SELECT COUNT(*) FROM mailbox_entries e WHERE e.mailbox=b.id)
                 FROM mailboxes b WHERE b.\"user\"=$1 ORDER BY b.id",
                &[&user],
            )
            .await?
            .iter()
            .map(|r| MailboxInfo {
                name: r.get(0),
                uidvalidity: r.get(1),
                uidnext: r.get(2),
                messages: r.get::<_, i64>(3) as u64,
            })
            .collect())
        })
    }

    pub fn mailbox_messages(&self, user: &str, mailbox: &str) -> Result<Vec<MessageSummary>> {
        self.summaries(
            MAILBOX_SUMMARIES,
            vec![user.trim().to_ascii_lowercase(), mailbox.to_string()],
        )
    }

    pub fn queue_messages(&self, queue: &str) -> Result<Vec<MessageSummary>> {
        self.summaries(QUEUE_SUMMARIES, vec![queue.to_string()])
    }

    /// A message's bytes by its store id, or by the id of the queue item (`q12`),
    /// folder entry (`m12`) or quarantine row (`x12`) that holds it.
    pub fn message_raw(&self, id: &str) -> Result<Vec<u8>> {
        let (sql, key) = if let Some(n) = id.strip_prefix('q') {
            (
                "SELECT m.uid, m.size FROM queue_items q JOIN messages m ON m.id=q.message
                 WHERE q.id::text=$1",
                n,
            )
        } else if let Some(n) = id.strip_prefix('m') {
            (
                "SELECT m.uid, m.size FROM mailbox_entries e JOIN messages m ON m.id=e.message
                 WHERE e.id::text=$1",
                n,
            )
        } else if let Some(n) = id.strip_prefix('x') {
            (
                "SELECT m.uid, m.size FROM quarantine z JOIN messages m ON m.id=z.message
                 WHERE z.id::text=$1",
                n,
            )
        } else {
            let (uid, _) = self.message_by_uid(id)?;
            return self.objects()?.get(&uid, None);
        };
        let key = key.to_string();
        let uid: Option<String> = self.with_client(move |c| async move {
            Ok(c.query_opt(sql, &[&key])
                .await
                .map_err(pg)?
                .map(|r| r.get(0)))
        })?;
        let uid = uid.ok_or_else(|| StoreError::NotFound("no such message".into()))?;
        self.objects()?.get(&uid, None)
    }

    /// The message's uid and size, unless it is gone or waiting for the reclaim (as
    /// far as readers go, deleted).
    fn message_by_uid(&self, uid: &str) -> Result<(String, u64)> {
        if uid.len() < 2 || !uid.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(StoreError::NotFound("no such message".into()));
        }
        let key = uid.to_string();
        self.with_client(move |c| async move {
            c.query_opt_cached(
                "SELECT uid, size FROM messages m WHERE uid=$1
                   AND NOT EXISTS (SELECT 1 FROM reclaim r WHERE r.message=m.id)",
                &[&key],
            )
            .await?
            .map(|r| (r.get(0), r.get::<_, i64>(1) as u64))
            .ok_or_else(|| StoreError::NotFound("no such message".into()))
        })
    }

    pub fn message_append_to(&self, message: &str, buf: &mut Vec<u8>) -> Result<usize> {
        let (uid, _) = self.message_by_uid(message)?;
        self.objects()?.read_into(&uid, buf)
    }

    /// Only the header block: one ranged read of the object's start.
    pub fn message_head(&self, message: &str) -> Result<Vec<u8>> {
        let (uid, size) = self.message_by_uid(message)?;
        let mut head = self.objects()?.get(&uid, Some(0..size.min(HEAD_LIMIT)))?;
        let end = head
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .map(|p| p + 4)
            .or_else(|| head.windows(2).position(|w| w == b"\n\n").map(|p| p + 2));
        if let Some(end) = end {
            head.truncate(end);
        }
        Ok(head)
    }

    /// The user's own deletions from one folder (POP3 DELE, IMAP EXPUNGE): `m<n>` ids,
    /// others ignored.
    pub fn mailbox_delete(&self, user: &str, mailbox: &str, ids: &[String]) -> Result<u64> {
        let entries: Vec<i64> = ids
            .iter()
            .filter_map(|id| id.strip_prefix('m')?.parse().ok())
            .collect();
        let (user, mailbox) = (user.trim().to_ascii_lowercase(), canonical(mailbox));
        let deleted = self.with_client(move |mut c| async move {
            let tx = c.transaction().await.map_err(pg)?;
            let deleted = expunge(&tx, &user, &mailbox, &entries).await?;
            super::commit(tx).await?;
            Ok(deleted)
        })?;
        if deleted > 0 {
            self.folders_changed();
        }
        Ok(deleted)
    }

    pub fn imap_cache_get(&self, messages: &[String]) -> Result<Vec<ImapCached>> {
        let messages = messages.to_vec();
        self.with_client(move |c| async move {
            let rows = c
                .query_cached(
                    "SELECT uid, envelope, bodystructure FROM imap_cache WHERE uid=ANY($1)",
                    &[&messages],
                )
                .await?;
            let mut found: std::collections::HashMap<String, ImapCached> = rows
                .iter()
                .map(|r| {
                    let cached = ImapCached {
                        envelope: r.get(1),
                        bodystructure: r.get(2),
                    };
                    (r.get(0), cached)
                })
                .collect();
            Ok(messages
                .iter()
                .map(|m| found.remove(m).unwrap_or_default())
                .collect())
        })
    }

    pub fn imap_cache_put(&self, entries: Vec<(String, ImapCached)>) -> Result<()> {
        self.with_client(move |c| async move {
            for (uid, cached) in entries {
                // Only for messages that still exist.
                c.execute_cached(
                    "INSERT INTO imap_cache(uid, envelope, bodystructure)
                     SELECT $1, $2, $3 WHERE EXISTS (SELECT 1 FROM messages WHERE uid=$1)
                     ON CONFLICT(uid) DO UPDATE SET
                       envelope=COALESCE(EXCLUDED.envelope, imap_cache.envelope),
                       bodystructure=COALESCE(EXCLUDED.bodystructure, imap_cache.bodystructure)",
                    &[&uid, &cached.envelope, &cached.bodystructure],
                )
                .await?;
            }
            Ok(())
        })
    }
}
