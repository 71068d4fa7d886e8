//! The message event log on PostgreSQL: downloads noted off the reading path, old
//! events pruned, and `trace` and `exposure` read (their answers assembled by
//! `message_path`, as on the embedded store).

use super::{pg, read_only, PostgresStore};
use crate::embedded::events::DOWNLOADED;
use crate::message_path;
use crate::model::{ExposureRow, ExposureScope, MessageTrace, TraceEvent};
use crate::{now, Result};
use deadpool_postgres::Transaction;

impl PostgresStore {
    /// Notes that `user`'s client downloaded these mailbox entries. Returns at once:
    /// reading mail must not wait on the log, so the insert runs on the store's
    /// runtime and a failure is only logged.
    pub fn record_downloads(&self, user: &str, detail: &str, entries: Vec<i64>) {
        if entries.is_empty() {
            return;
        }
        let (user, detail) = (user.to_string(), detail.to_string());
        let pool = self.pool.clone();
        let noted = self.bridge.spawn(async move {
            let inserted = async {
                let c = pool.get().await.map_err(|e| e.to_string())?;
                // One statement for the whole batch: a client syncing a folder
                // downloads thousands of messages in one command.
                c.execute(
                    "INSERT INTO message_events(message, at, kind, who, detail)
                     SELECT e.message, $2, $3, $4, $5 FROM mailbox_entries e
                     WHERE e.id = ANY($1)",
                    &[&entries, &now(), &DOWNLOADED, &user, &detail],
                )
                .await
                .map_err(|e| pg(e).to_string())
            };
            if let Err(e) = inserted.await {
                tracing::warn!("noting downloads by {user} in the event log: {e}");
            }
        });
        if let Err(e) = noted {
            tracing::warn!("noting downloads in the event log: {e}");
        }
    }

    /// Removes message events older than `before` (unix seconds), at most `limit`,
    /// oldest first; returns how many went.
    pub fn prune_events(&self, before: i64, limit: usize) -> Result<usize> {
        self.with_client(move |c| async move {
            let n = c
                .execute(
                    "DELETE FROM message_events WHERE id IN
                       (SELECT id FROM message_events WHERE at<$1 ORDER BY id LIMIT $2)",
                    &[&before, &(limit as i64)],
                )
                .await
                .map_err(pg)?;
            Ok(n as usize)
        })
    }
}

impl PostgresStore {
    /// The paths of the messages with store id `id` or Message-ID `message_id`.
    pub fn trace(&self, id: Option<&str>, message_id: Option<&str>) -> Result<Vec<MessageTrace>> {
        let (id, message_id) = (id.map(str::to_string), message_id.map(str::to_string));
        self.with_client(move |mut c| async move {
            let tx = read_only(&mut c).await?;
            let mut ids = match &id {
                Some(uid) => messages_with_uid(&tx, uid.trim()).await?,
                None => Vec::new(),
            };
            if let Some(mid) = &message_id {
                for m in messages_with_message_id(&tx, mid).await? {
                    if !ids.contains(&m) {
                        ids.push(m);
                    }
                }
            }
            ids.sort_unstable();
            let mut out = Vec::new();
            for m in ids {
                out.push(message_path::trace(facts(&tx, m).await?));
            }
            Ok(out)
        })
    }

    /// Every copy of the messages in `scope` and what became of it.
    pub fn exposure(&self, scope: &ExposureScope) -> Result<Vec<ExposureRow>> {
        let scope = scope.clone();
        self.with_client(move |mut c| async move {
            let tx = read_only(&mut c).await?;
            let mut all = Vec::new();
            for m in scope_messages(&tx, &scope).await? {
                all.push(facts(&tx, m).await?);
            }
            Ok(message_path::exposure(&all))
        })
    }
}

/// The row ids of messages with store id `uid`, present or gone (an event row kept
/// the id of a message whose row went).
async fn messages_with_uid(tx: &Transaction<'_>, uid: &str) -> Result<Vec<i64>> {
    let rows = tx
        .query(
            "SELECT id FROM messages WHERE uid=$1
             UNION SELECT message FROM message_events WHERE uid=$1",
            &[&uid],
        )
        .await
        .map_err(pg)?;
    Ok(rows.iter().map(|r| r.get(0)).collect())
}

/// The row ids of messages whose Message-ID is `mid`: present ones by their row, gone
/// ones by their `accepted`/`submitted` event (a scan of the log; only for messages no
/// longer stored).
async fn messages_with_message_id(tx: &Transaction<'_>, mid: &str) -> Result<Vec<i64>> {
    let mid = message_path::bare_message_id(mid);
    let rows = tx
        .query(
            "SELECT id FROM messages WHERE message_id=$1
             UNION SELECT message FROM message_events
               WHERE kind IN ('accepted', 'submitted') AND detail LIKE $2 ESCAPE '\\'",
            &[&mid, &message_path::message_id_pattern(mid)],
        )
        .await
        .map_err(pg)?;
    Ok(rows.iter().map(|r| r.get(0)).collect())
}

/// The messages an exposure report covers: row ids, ascending.
async fn scope_messages(tx: &Transaction<'_>, scope: &ExposureScope) -> Result<Vec<i64>> {
    let mut ids: Vec<i64> = Vec::new();
    match scope {
        ExposureScope::Cluster(cluster) => {
            // Members present (their fingerprint names the cluster or one it
            // absorbed) and gone (their `gone` event names it).
            let rows = tx
                .query(
                    "WITH k AS (SELECT id FROM clusters WHERE id=$1 OR parent=$1)
                     SELECT message FROM fingerprints WHERE cluster IN (SELECT id FROM k)
                     UNION SELECT message FROM message_events
                       WHERE kind='gone' AND who IN (SELECT id::text FROM k)",
                    &[cluster],
                )
                .await
                .map_err(pg)?;
            ids.extend(rows.iter().map(|r| r.get::<_, i64>(0)));
        }
        ExposureScope::Places(places) => {
            for place in places {
                let (kind, n) = place.split_at(place.len().min(1));
                let Ok(n) = n.parse::<i64>() else { continue };
                let sql = match kind {
                    "q" => "SELECT message FROM queue_items WHERE id=$1",
                    "m" => "SELECT message FROM mailbox_entries WHERE id=$1",
                    "x" => "SELECT message FROM quarantine WHERE id=$1",
                    _ => continue,
                };
                if let Some(r) = tx.query_opt(sql, &[&n]).await.map_err(pg)? {
                    ids.push(r.get(0));
                }
            }
        }
    }
    ids.sort_unstable();
    ids.dedup();
    Ok(ids)
}

/// What both reports read of message `message` (see `message_path`).
async fn facts(tx: &Transaction<'_>, message: i64) -> Result<message_path::Facts> {
    let stored = tx
        .query_opt(
            "SELECT uid, message_id, subject, env_from FROM messages WHERE id=$1",
            &[&message],
        )
        .await
        .map_err(pg)?
        .map(|r| message_path::Stored {
            uid: r.get(0),
            message_id: r.get(1),
            subject: r.get(2),
            env_from: r.get(3),
        });
    let events = tx
        .query(
            "SELECT at, kind, who, detail, uid FROM message_events WHERE message=$1 ORDER BY id",
            &[&message],
        )
        .await
        .map_err(pg)?
        .iter()
        .map(|r| {
            (
                TraceEvent {
                    at: r.get(0),
                    event: r.get(1),
                    who: r.get(2),
                    detail: r.get(3),
                },
                r.get(4),
            )
        })
        .collect();
    let queued = tx
        .query(
            "SELECT q.id, q.queue, q.state,
                    COALESCE((SELECT array_agg(r.address) FROM queue_rcpts r WHERE r.item=q.id),
                             '{}')
             FROM queue_items q WHERE q.message=$1 ORDER BY q.id",
            &[&message],
        )
        .await
        .map_err(pg)?
        .iter()
        .map(|r| message_path::Queued {
            item: r.get(0),
            queue: r.get(1),
            state: r.get(2),
            recipients: r.get(3),
        })
        .collect();
    let filed = tx
        .query(
            "SELECT b.\"user\", b.name, e.flags, e.internal_date FROM mailbox_entries e
             JOIN mailboxes b ON b.id=e.mailbox WHERE e.message=$1 ORDER BY e.id",
            &[&message],
        )
        .await
        .map_err(pg)?
        .iter()
        .map(|r| message_path::Filed {
            user: r.get(0),
            folder: r.get(1),
            flags: r.get(2),
            internal_date: r.get(3),
        })
        .collect();
    let held = tx
        .query(
            "SELECT id, recipients, origin_location FROM quarantine WHERE message=$1 ORDER BY id",
            &[&message],
        )
        .await
        .map_err(pg)?
        .iter()
        .map(|r| message_path::Held {
            id: r.get(0),
            recipients: r.get(1),
            origin_location: r.get(2),
        })
        .collect();
    Ok(message_path::Facts {
        message,
        stored,
        events,
        queued,
        filed,
        held,
    })
}
