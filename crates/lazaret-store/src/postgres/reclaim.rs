//! The background reclaim on the shared database: messages that no queue item, folder
//! entry or quarantine row holds any more (noted in `reclaim` by the action that let
//! them go) lose their rows, then their objects. As in the embedded store, the action
//! itself only deletes the row that placed the message; this does the rest later.
//!
//! Nodes reclaim side by side: each takes its batch of the list with `SKIP LOCKED`.
//! A message placed again since its release (an IMAP COPY from a stale view) only
//! leaves the list.

use super::cached::Cached;
use super::{pg, record_events, Event, PostgresStore};
use crate::embedded::events::GONE;
use crate::{now, Result};

impl PostgresStore {
    /// Reclaims up to `limit` released messages, lowest ids first; returns how many
    /// left the list.
    pub fn reclaim(&self, limit: usize) -> Result<usize> {
        let (taken, gone) = self.with_client(move |mut c| async move {
            let tx = c.transaction().await.map_err(pg)?;
            let taken: Vec<i64> = tx
                .query_cached(
                    "DELETE FROM reclaim WHERE message IN (
                         SELECT message FROM reclaim ORDER BY message LIMIT $1
                         FOR UPDATE SKIP LOCKED)
                     RETURNING message",
                    &[&(limit as i64)],
                )
                .await?
                .iter()
                .map(|r| r.get(0))
                .collect();
            if !taken.is_empty() {
                // Clusters are counted down below: under the filing lock, as filing
                // counts them up, and taken first, as everywhere else.
                super::clusters::lock_filing(&tx).await?;
            }
            // Parts and text go with the row (ON DELETE CASCADE).
            let rows = tx
                .query_cached(
                    "DELETE FROM messages m WHERE m.id=ANY($1)
                       AND NOT EXISTS (SELECT 1 FROM queue_items q WHERE q.message=m.id)
                       AND NOT EXISTS (SELECT 1 FROM mailbox_entries e WHERE e.message=m.id)
                       AND NOT EXISTS (SELECT 1 FROM quarantine z WHERE z.message=m.id)
                     RETURNING m.id, m.uid, m.subject",
                    &[&taken],
                )
                .await?;
            let mut gone = Vec::with_capacity(rows.len());
            let ids: Vec<i64> = rows.iter().map(|r| r.get(0)).collect();
            // Counting clusters down: under the filing lock, as filing counts them up.
            let clusters = super::clusters::forget(&tx, &ids).await?;
            let mut events = Vec::with_capacity(rows.len());
            for r in &rows {
                let (id, uid, subject): (i64, String, String) = (r.get(0), r.get(1), r.get(2));
                // The log keeps what `trace` and `exposure --cluster` need of a message
                // no longer stored: its store id, subject and outbreak cluster.
                let cluster = clusters.get(&id).map(|k| k.to_string()).unwrap_or_default();
                let subject: String = subject.chars().take(200).collect();
                events.push(Event::new(id, GONE, cluster, subject).keeping(uid.clone()));
                gone.push(uid);
            }
            record_events(&tx, now(), &events).await?;
            tx.execute_cached("DELETE FROM imap_cache WHERE uid=ANY($1)", &[&gone])
                .await?;
            super::commit(tx).await?;
            Ok((taken.len(), gone))
        })?;
        // After the commit: a failed delete leaves an object for the orphan sweep.
        if !gone.is_empty() {
            self.objects()?.delete(gone);
        }
        Ok(taken)
    }

    /// How many released messages wait for the reclaim.
    pub fn reclaim_backlog(&self) -> Result<u64> {
        self.with_client(|c| async move {
            let row = c
                .query_one_cached("SELECT COUNT(*) FROM reclaim", &[])
                .await?;
            Ok(row.get::<_, i64>(0) as u64)
        })
    }

    /// Messages stored (every row, whatever holds it).
    pub fn message_count(&self) -> Result<u64> {
        self.with_client(|c| async move {
            let row = c
                .query_one_cached("SELECT COUNT(*) FROM messages", &[])
                .await?;
            Ok(row.get::<_, i64>(0) as u64)
        })
    }
}
